//! A small blocking client of Hydra's HTTP API, used by the `hydra` command line and tests.
//! It maps HTTP to plain results and leaves presentation to the caller.

use serde_json::Value;
use std::time::Duration;

/// Largest response body read, in bytes (the largest value plus room for a sibling list).
pub const RESPONSE_BYTES_MAX: u64 = 200 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach {endpoint}: {source}")]
    Unreachable {
        endpoint: String,
        source: Box<ureq::Error>,
    },
    #[error("{code}: {message} (HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
        body: Value,
    },
}

/// One answer of the key-value API.
#[derive(Clone, Debug)]
pub struct KvResponse {
    pub status: u16,
    pub context: Option<String>,
    pub receipt: Option<Value>,
    /// What Paxos did (`X-Hydra-Paxos`: ballot, attempts, round trips...), on compare-and-set
    /// answers.
    pub paxos: Option<Value>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl KvResponse {
    /// The body as JSON (for 300 responses and errors).
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

pub struct Client {
    agent: ureq::Agent,
    endpoint: String,
    /// `Bearer <token>`, sent with every request but `/health`'s.
    authorization: Option<String>,
}

/// Percent-encodes one path segment (everything but unreserved characters).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// `endpoint` is `host:port` or a URL (`http://host:port`).
    pub fn new(endpoint: &str) -> Client {
        Client::with_timeout(endpoint, Duration::from_secs(130))
    }

    /// A client whose every request gives up after `timeout` (connect, send and answer).
    pub fn with_timeout(endpoint: &str, timeout: Duration) -> Client {
        let endpoint = if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
            endpoint.trim_end_matches('/').to_string()
        } else {
            format!("http://{endpoint}")
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Client {
            agent,
            endpoint,
            authorization: None,
        }
    }

    /// Sends `token` as the bearer token of every request (every route but `/health` needs
    /// one).
    pub fn with_token(mut self, token: &str) -> Client {
        self.authorization = Some(format!("Bearer {token}"));
        self
    }

    /// The same as [`with_token`](Self::with_token) when there is a token.
    pub fn with_token_opt(self, token: Option<&str>) -> Client {
        match token {
            Some(t) => self.with_token(t),
            None => self,
        }
    }

    fn authed<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(a) => req.header("authorization", a),
            None => req,
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn kv_url(&self, bucket: &str, key: &str) -> String {
        format!(
            "{}/v1/kv/{}/{}",
            self.endpoint,
            encode_segment(bucket),
            encode_segment(key)
        )
    }

    fn unreachable(&self, e: ureq::Error) -> Error {
        Error::Unreachable {
            endpoint: self.endpoint.clone(),
            source: Box::new(e),
        }
    }

    fn finish(
        &self,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<KvResponse, Error> {
        let mut resp = resp.map_err(|e| self.unreachable(e))?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let context = header("x-hydra-context");
        let receipt = header("x-hydra-receipt").and_then(|r| serde_json::from_str(&r).ok());
        let paxos = header("x-hydra-paxos").and_then(|r| serde_json::from_str(&r).ok());
        let content_type = header("content-type");
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(RESPONSE_BYTES_MAX)
            .read_to_vec()
            .map_err(|e| self.unreachable(e))?;
        Ok(KvResponse {
            status,
            context,
            receipt,
            paxos,
            content_type,
            body,
        })
    }

    /// GET a key; `params` are query parameters such as `("r", "all")`. 200, 300 and 404 are
    /// answers, not errors.
    pub fn get(
        &self,
        bucket: &str,
        key: &str,
        params: &[(&str, &str)],
    ) -> Result<KvResponse, Error> {
        let mut req = self.authed(self.agent.get(self.kv_url(bucket, key)));
        for (k, v) in params {
            req = req.query(*k, *v);
        }
        let r = self.finish(req.call())?;
        // 404 is an answer (the key is absent) only with code not_found; an unknown bucket
        // is an error.
        if r.status == 404 && r.json().is_some_and(|b| b["code"] != "not_found") {
            return api_result(r, &[]);
        }
        api_result(r, &[200, 300, 404])
    }

    pub fn put(
        &self,
        bucket: &str,
        key: &str,
        value: &[u8],
        content_type: &str,
        context: Option<&str>,
        params: &[(&str, &str)],
    ) -> Result<KvResponse, Error> {
        let mut req = self
            .authed(self.agent.put(self.kv_url(bucket, key)))
            .header("content-type", content_type);
        if let Some(c) = context {
            req = req.header("x-hydra-context", c);
        }
        for (k, v) in params {
            req = req.query(*k, *v);
        }
        api_result(self.finish(req.send(value))?, &[204])
    }

    /// A compare-and-set write (PUT with `If-None-Match`/`If-Match`): `Ok` with status 204
    /// (applied) or 412 (not applied; `context` is the current version).
    pub fn put_if(
        &self,
        bucket: &str,
        key: &str,
        value: &[u8],
        content_type: &str,
        condition: &Precondition,
    ) -> Result<KvResponse, Error> {
        let (name, token) = condition.header();
        let req = self
            .authed(self.agent.put(self.kv_url(bucket, key)))
            .header("content-type", content_type)
            .header(name, token);
        api_result(self.finish(req.send(value))?, &[204, 412])
    }

    /// A compare-and-set delete: `Ok` with status 204 (applied) or 412 (not applied).
    pub fn delete_if(
        &self,
        bucket: &str,
        key: &str,
        condition: &Precondition,
    ) -> Result<KvResponse, Error> {
        let (name, token) = condition.header();
        let req = self
            .authed(self.agent.delete(self.kv_url(bucket, key)))
            .header(name, token);
        api_result(self.finish(req.call())?, &[204, 412])
    }

    pub fn delete(
        &self,
        bucket: &str,
        key: &str,
        context: Option<&str>,
        params: &[(&str, &str)],
    ) -> Result<KvResponse, Error> {
        let mut req = self.authed(self.agent.delete(self.kv_url(bucket, key)));
        if let Some(c) = context {
            req = req.header("x-hydra-context", c);
        }
        for (k, v) in params {
            req = req.query(*k, *v);
        }
        api_result(self.finish(req.call())?, &[204])
    }

    fn json_get(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, Error> {
        let mut req = self.authed(self.agent.get(format!("{}{path}", self.endpoint)));
        for (k, v) in params {
            req = req.query(*k, *v);
        }
        let r = api_result(self.finish(req.call())?, &[200])?;
        Ok(r.json().unwrap_or(Value::Null))
    }

    pub fn status(&self) -> Result<Value, Error> {
        self.json_get("/v1/status", &[])
    }

    pub fn ring(&self, params: &[(&str, &str)]) -> Result<Value, Error> {
        self.json_get("/v1/ring", params)
    }

    /// Truncates a bucket (`DELETE /v1/kv/{bucket}`): every value written so far is gone.
    pub fn truncate(&self, bucket: &str) -> Result<Value, Error> {
        let url = format!("{}/v1/kv/{}", self.endpoint, encode_segment(bucket));
        let r = api_result(
            self.finish(self.authed(self.agent.delete(url)).call())?,
            &[200],
        )?;
        Ok(r.json().unwrap_or(Value::Null))
    }

    /// One page of a bucket's keys (`GET /v1/kv/{bucket}`): `{"keys", "binary_keys_base64",
    /// "next"}`; pass `next` back as `after` for the following page.
    pub fn list(&self, bucket: &str, after: Option<&str>, limit: usize) -> Result<Value, Error> {
        let limit = limit.to_string();
        let mut params = vec![("limit", limit.as_str())];
        if let Some(a) = after {
            params.push(("after", a));
        }
        self.json_get(&format!("/v1/kv/{}", encode_segment(bucket)), &params)
    }

    pub fn buckets(&self) -> Result<Value, Error> {
        self.json_get("/v1/buckets", &[])
    }

    pub fn bucket(&self, name: &str) -> Result<Value, Error> {
        self.json_get(&format!("/v1/buckets/{}", encode_segment(name)), &[])
    }

    /// Creates a bucket or changes the given properties.
    pub fn set_bucket(&self, name: &str, props: &Value) -> Result<Value, Error> {
        let url = format!("{}/v1/buckets/{}", self.endpoint, encode_segment(name));
        let resp = self
            .authed(self.agent.put(url))
            .header("content-type", "application/json")
            .send(props.to_string());
        let r = api_result(self.finish(resp)?, &[200])?;
        Ok(r.json().unwrap_or(Value::Null))
    }

    /// An admin API call (`/v1/admin/...`): `method` is GET, POST, PUT or DELETE; the JSON
    /// answer (`null` for 204).
    pub fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Error> {
        let url = format!("{}/v1/admin/{path}", self.endpoint);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let resp = match method {
            "GET" => self.authed(self.agent.get(url)).call(),
            "DELETE" => self.authed(self.agent.delete(url)).call(),
            "POST" => self
                .authed(self.agent.post(url))
                .header("content-type", "application/json")
                .send(body),
            _ => self
                .authed(self.agent.put(url))
                .header("content-type", "application/json")
                .send(body),
        };
        let r = api_result(self.finish(resp)?, &[200, 201, 204])?;
        Ok(r.json().unwrap_or(Value::Null))
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> Result<String, Error> {
        let resp = self
            .authed(self.agent.get(format!("{}/metrics", self.endpoint)))
            .call();
        let r = api_result(self.finish(resp)?, &[200])?;
        Ok(String::from_utf8_lossy(&r.body).into_owned())
    }

    pub fn health(&self) -> Result<(), Error> {
        let resp = self
            .authed(self.agent.get(format!("{}/health", self.endpoint)))
            .call();
        api_result(self.finish(resp)?, &[200]).map(|_| ())
    }
}

/// The condition of a compare-and-set write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// The key is absent (`If-None-Match: *`).
    Absent,
    /// The key is present (`If-Match: *`).
    Present,
    /// The key's current version is the one this context (from a read) names (`If-Match`).
    Matches(String),
}

impl Precondition {
    fn header(&self) -> (&'static str, &str) {
        match self {
            Precondition::Absent => ("if-none-match", "*"),
            Precondition::Present => ("if-match", "*"),
            Precondition::Matches(context) => ("if-match", context),
        }
    }
}

fn api_result(r: KvResponse, ok: &[u16]) -> Result<KvResponse, Error> {
    if ok.contains(&r.status) {
        return Ok(r);
    }
    let body = r.json().unwrap_or(Value::Null);
    let field = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let message = if body.is_null() {
        String::from_utf8_lossy(&r.body).into_owned()
    } else {
        field("message")
    };
    Err(Error::Api {
        status: r.status,
        code: field("code"),
        message,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(encode_segment("ok-_.~"), "ok-_.~");
    }
}
