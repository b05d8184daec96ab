//! `INCRBYFLOAT`'s arithmetic, as Redis does it on x86-64: values are C `long double`s (the
//! x87 80-bit format: a 64-bit significand, exponents to ±16383), parsed by `strtold`
//! (decimal, hexadecimal, `inf`), added with one rounding to nearest-even, and printed with
//! `"%.17Lf"`, trailing zeros and a bare `-0` removed. Replies must match a real
//! redis-server byte for byte (`-4989.39999999999999991`, not the `f64` answer), so the
//! format is emulated exactly here with big integers: a value is `significand × 2^exponent`,
//! rounded once per operation as the hardware rounds.
//!
//! Denormals are kept at full precision (they print as 0 anyway); a value below the
//! smallest denormal reads as `strtold`'s underflow, which Redis refuses.

use num_bigint::{BigInt, BigUint, Sign};

/// Bits of the x87 significand.
const SIGNIFICAND_BITS: u64 = 64;
/// Largest exponent of the top significand bit (values at or above `2^16384` are infinite).
const TOP_BIT_EXPONENT_MAX: i64 = 16383;
/// Smallest exponent of the lowest bit of a denormal (`2^-16445`).
const LOWEST_BIT_EXPONENT_MIN: i64 = -16445;
/// Redis copies a float argument into a buffer of this many bytes, and refuses longer ones.
const FLOAT_CHARS_MAX: usize = 5 * 1024;
/// Decimal exponents beyond this are certainly out of range (digits are at most 5 KiB).
const DECIMAL_EXPONENT_MAX: i64 = 10_000;

/// A finite extended-precision value, or an infinity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Ext {
    /// `(-1)^negative × significand × 2^exponent`; zero has significand 0.
    Finite {
        negative: bool,
        significand: u64,
        exponent: i64,
    },
    Infinite {
        negative: bool,
    },
}

impl Ext {
    const ZERO: Ext = Ext::Finite {
        negative: false,
        significand: 0,
        exponent: 0,
    };

    /// Reads a float as Redis's `string2ld` does: the whole input, no leading space, no NaN,
    /// no overflow or underflow to zero. `None`: "value is not a valid float".
    pub(super) fn parse(text: &[u8]) -> Option<Ext> {
        if text.is_empty() || text.len() >= FLOAT_CHARS_MAX || text[0].is_ascii_whitespace() {
            return None;
        }
        let (negative, rest) = match text[0] {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let lower = rest.to_ascii_lowercase();
        if lower == b"inf" || lower == b"infinity" {
            return Some(Ext::Infinite { negative });
        }
        let exact = if lower.starts_with(b"0x") {
            parse_hex(&lower[2..])?
        } else {
            parse_decimal(&lower)?
        };
        let (num, den, shift) = exact;
        if num.bits() == 0 {
            return Some(Ext::Finite {
                negative,
                significand: 0,
                exponent: 0,
            });
        }
        match round(negative, &num, &den, shift) {
            // Overflow (`HUGE_VAL`) and underflow to zero are `ERANGE` errors to Redis.
            Ext::Infinite { .. } => None,
            Ext::Finite { significand: 0, .. } => None,
            v => Some(v),
        }
    }

    /// The sum, rounded once to nearest-even; an infinity for overflow; `None` for NaN
    /// (infinities of both signs).
    pub(super) fn add(&self, other: &Ext) -> Option<Ext> {
        match (self, other) {
            (Ext::Infinite { negative: a }, Ext::Infinite { negative: b }) if a != b => None,
            (i @ Ext::Infinite { .. }, _) | (_, i @ Ext::Infinite { .. }) => Some(i.clone()),
            (
                Ext::Finite {
                    negative: na,
                    significand: sa,
                    exponent: ea,
                },
                Ext::Finite {
                    negative: nb,
                    significand: sb,
                    exponent: eb,
                },
            ) => {
                if *sa == 0 && *sb == 0 {
                    // -0 + -0 is -0; any other pair of zeros is +0.
                    return Some(Ext::Finite {
                        negative: *na && *nb,
                        significand: 0,
                        exponent: 0,
                    });
                }
                let low = (*ea).min(*eb);
                let term = |neg: bool, s: u64, e: i64| {
                    let magnitude = BigInt::from(s) << ((e - low) as usize);
                    if neg { -magnitude } else { magnitude }
                };
                let sum = term(*na, *sa, *ea) + term(*nb, *sb, *eb);
                let (sign, magnitude) = sum.into_parts();
                if magnitude.bits() == 0 {
                    return Some(Ext::ZERO);
                }
                let (num, den) = if low >= 0 {
                    (magnitude << (low as usize), BigUint::from(1u8))
                } else {
                    (magnitude, BigUint::from(1u8) << ((-low) as usize))
                };
                Some(round(sign == Sign::Minus, &num, &den, 0))
            }
        }
    }

    pub(super) fn is_finite(&self) -> bool {
        matches!(self, Ext::Finite { .. })
    }

    /// `"%.17Lf"` with trailing zeros (and then a trailing point) removed, and `-0` as `0`:
    /// Redis's `ld2string(..., LD_STR_HUMAN)`. Infinities print as `inf`/`-inf`.
    pub(super) fn to_redis_string(&self) -> String {
        let (negative, significand, exponent) = match self {
            Ext::Infinite { negative } => {
                return if *negative { "-inf" } else { "inf" }.to_string();
            }
            Ext::Finite {
                negative,
                significand,
                exponent,
            } => (*negative, *significand, *exponent),
        };
        let scale = BigUint::from(10u8).pow(17);
        let scaled = if exponent >= 0 {
            (BigUint::from(significand) << (exponent as usize)) * &scale
        } else {
            let den = BigUint::from(1u8) << ((-exponent) as usize);
            let num = BigUint::from(significand) * &scale;
            divide_rounding_even(&num, &den)
        };
        let digits = scaled.to_str_radix(10);
        let digits = format!("{digits:0>18}");
        let (int, frac) = digits.split_at(digits.len() - 17);
        let frac = frac.trim_end_matches('0');
        let mut out = String::with_capacity(digits.len() + 2);
        if negative {
            out.push('-');
        }
        out.push_str(int);
        if !frac.is_empty() {
            out.push('.');
            out.push_str(frac);
        }
        if out == "-0" { "0".to_string() } else { out }
    }
}

/// `num / den` rounded to the nearest integer, ties to even.
fn divide_rounding_even(num: &BigUint, den: &BigUint) -> BigUint {
    let q = num / den;
    let r = num - &q * den;
    let twice = r << 1usize;
    if twice > *den || (twice == *den && q.bit(0)) {
        q + 1u8
    } else {
        q
    }
}

/// The value `num / den × 2^shift` rounded to a 64-bit significand (nearest, ties to
/// even), with the x87 exponent range: above it an infinity, below the smallest denormal
/// zero, denormals at full precision.
fn round(negative: bool, num: &BigUint, den: &BigUint, shift: i64) -> Ext {
    // Choose s so that q = num × 2^s / den has exactly 64 bits.
    let mut s = SIGNIFICAND_BITS as i64 - (num.bits() as i64 - den.bits() as i64);
    loop {
        let (n, d) = if s >= 0 {
            (num << (s as usize), den.clone())
        } else {
            (num.clone(), den << ((-s) as usize))
        };
        let q = &n / &d;
        if q.bits() > SIGNIFICAND_BITS {
            s -= 1;
            continue;
        }
        if q.bits() < SIGNIFICAND_BITS {
            s += 1;
            continue;
        }
        let mut q = divide_rounding_even(&n, &d);
        if q.bits() > SIGNIFICAND_BITS {
            // Rounded up to 2^64: one bit less of fraction (exactly 2^63 × 2).
            q >>= 1usize;
            s -= 1;
        }
        let exponent = shift - s;
        let top = exponent + SIGNIFICAND_BITS as i64 - 1;
        if top > TOP_BIT_EXPONENT_MAX {
            return Ext::Infinite { negative };
        }
        if top < LOWEST_BIT_EXPONENT_MIN {
            return Ext::Finite {
                negative,
                significand: 0,
                exponent: 0,
            };
        }
        let significand = q.to_u64_digits().first().copied().unwrap_or(0);
        return Ext::Finite {
            negative,
            significand,
            exponent,
        };
    }
}

/// Decimal digits with an optional point and exponent: the exact value as
/// `(numerator, denominator, binary shift)`.
fn parse_decimal(text: &[u8]) -> Option<(BigUint, BigUint, i64)> {
    let (int, frac, exponent) = split_number(text, b'e')?;
    if !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    let exp = match exponent {
        None => 0,
        Some(e) => parse_exponent(e)?,
    };
    let digits: Vec<u8> = int.iter().chain(frac).map(|d| d - b'0').collect();
    let value = BigUint::from_radix_be(&digits, 10)?;
    let exp = exp - frac.len() as i64;
    if value.bits() == 0 {
        return Some((value, BigUint::from(1u8), 0));
    }
    if exp > DECIMAL_EXPONENT_MAX {
        // Certainly beyond the range: an infinity.
        return Some((BigUint::from(1u8), BigUint::from(1u8), 1 << 20));
    }
    if exp + (digits.len() as i64) < -DECIMAL_EXPONENT_MAX {
        // Certainly below the smallest denormal.
        return Some((BigUint::from(1u8), BigUint::from(1u8), -(1 << 20)));
    }
    let ten = BigUint::from(10u8);
    Some(if exp >= 0 {
        (value * ten.pow(exp as u32), BigUint::from(1u8), 0)
    } else {
        (value, ten.pow((-exp) as u32), 0)
    })
}

/// Hexadecimal digits (after `0x`) with an optional point and binary exponent (`p`).
fn parse_hex(text: &[u8]) -> Option<(BigUint, BigUint, i64)> {
    let (int, frac, exponent) = split_number(text, b'p')?;
    let digit = |c: &u8| (*c as char).to_digit(16).map(|d| d as u8);
    let digits: Option<Vec<u8>> = int.iter().chain(frac).map(digit).collect();
    let value = BigUint::from_radix_be(&digits?, 16)?;
    let exp = match exponent {
        None => 0,
        Some(e) => parse_exponent(e)?,
    };
    let shift = exp - 4 * frac.len() as i64;
    Some((value, BigUint::from(1u8), shift.clamp(-(1 << 20), 1 << 20)))
}

/// A number's parts: integer digits, fraction digits (after a point), exponent.
type NumberParts<'a> = (&'a [u8], &'a [u8], Option<&'a [u8]>);

/// A number's integer digits, fraction digits (after a point) and exponent (after
/// `exponent_mark`); `None` without any digit before the exponent.
fn split_number(text: &[u8], exponent_mark: u8) -> Option<NumberParts<'_>> {
    let (mantissa, exponent) = match text.iter().position(|&c| c == exponent_mark) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let (int, frac) = match mantissa.iter().position(|&c| c == b'.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, &b""[..]),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    Some((int, frac, exponent))
}

/// An exponent: optional sign, then digits (clamped far beyond any range that matters).
fn parse_exponent(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: i64 = 0;
    for d in digits {
        n = (n * 10 + i64::from(d - b'0')).min(1 << 40);
    }
    Some(if negative { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `INCRBYFLOAT` of `increment` on `current`, as Redis replies.
    fn incr(current: &str, increment: &str) -> Result<String, &'static str> {
        let a = Ext::parse(current.as_bytes()).ok_or("not a valid float")?;
        let b = Ext::parse(increment.as_bytes()).ok_or("not a valid float")?;
        match a.add(&b) {
            Some(v) if v.is_finite() => Ok(v.to_redis_string()),
            _ => Err("NaN or Infinity"),
        }
    }

    /// Replies of redis-server 7.0.15 on x86-64.
    #[test]
    fn matches_redis_server() {
        let table: &[(&str, &str, Result<&str, &str>)] = &[
            ("10.50", "0.1", Ok("10.6")),
            ("10.6", "-5.0e3", Ok("-4989.39999999999999991")),
            ("0", "3", Ok("3")),
            ("3", "1.23456789012345678901", Ok("4.23456789012345679")),
            ("abc", "1", Err("not a valid float")),
            ("1", "abc", Err("not a valid float")),
            ("1", "inf", Err("NaN or Infinity")),
            (" 1", "1", Err("not a valid float")),
            ("0", "0.0000000000000000001", Ok("0")),
            (
                "0",
                "123456789012345678901234567890",
                Ok("123456789012345678899921813504"),
            ),
            ("1e5", "0", Ok("100000")),
            ("0", "5e-320", Ok("0")),
            ("0x10", "1", Ok("17")),
            ("0", ".5", Ok("0.5")),
            ("0", "5.", Ok("5")),
            ("0", "-0", Ok("0")),
            ("0", "nan", Err("not a valid float")),
            ("0", "1e-5000", Err("not a valid float")),
            ("0", "1e5000", Err("not a valid float")),
            ("-inf", "inf", Err("NaN or Infinity")),
            ("0", "", Err("not a valid float")),
            ("0", "1e", Err("not a valid float")),
            ("0", ".", Err("not a valid float")),
        ];
        for (current, increment, want) in table {
            assert_eq!(
                incr(current, increment).as_deref().map_err(|e| *e),
                *want,
                "{current} + {increment}"
            );
        }
        let big = incr("0", "1e400").expect("in range");
        assert!(big.starts_with("100000000000000000002818806839475865145864534336290520386259"));
        assert_eq!(big.len(), 401);
    }
}
