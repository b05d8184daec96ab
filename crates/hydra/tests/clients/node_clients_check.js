// node-redis and ioredis, unmodified, against a Hydra cluster: the patterns real applications
// use (a cache with SETEX, sessions in hashes, a tag set, SCAN over every key, a transaction,
// FLUSHDB in a test fixture), written through one node and read through another.
//
// Usage: node node_clients_check.js PORT_A PORT_B PASSWORD   (two nodes of the same cluster)
// Exits non-zero with an assertion message on the first difference from what Redis users
// expect; prints "<client> <version>: ok" per client.

const assert = require("node:assert/strict");
const { createClient } = require("redis");
const Redis = require("ioredis");

const [portA, portB, password] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4]];

async function scanAll(next) {
  const keys = new Set();
  let cursor = "0";
  for (let i = 0; i < 10000; i++) {
    const [c, page] = await next(cursor);
    page.forEach((k) => keys.add(k));
    cursor = String(c);
    if (cursor === "0") return keys;
  }
  throw new Error("SCAN never ended");
}

async function nodeRedis() {
  const a = createClient({ socket: { host: "127.0.0.1", port: portA }, password });
  const b = createClient({ socket: { host: "127.0.0.1", port: portB }, password });
  await a.connect();
  await b.connect();
  // A cache with SETEX.
  assert.equal(await a.setEx("nr:cache:1", 60, "page"), "OK");
  assert.equal(await b.get("nr:cache:1"), "page");
  const ttl = await b.ttl("nr:cache:1");
  assert.ok(ttl > 55 && ttl <= 60, `ttl ${ttl}`);
  // Sessions in hashes.
  assert.equal(await a.hSet("nr:sess:1", { user: "ada", visits: "1" }), 2);
  assert.equal(await a.expire("nr:sess:1", 3600), true);
  assert.deepEqual({ ...(await b.hGetAll("nr:sess:1")) }, { user: "ada", visits: "1" });
  assert.equal(await b.hIncrBy("nr:sess:1", "visits", 2), 3);
  assert.equal(await a.hGet("nr:sess:1", "visits"), "3");
  assert.equal(await a.hDel("nr:sess:1", "user"), 1);
  assert.deepEqual(await b.hKeys("nr:sess:1"), ["visits"]);
  assert.ok((await b.ttl("nr:sess:1")) > 3500);
  // A tag set.
  assert.equal(await a.sAdd("nr:tags:p1", ["rust", "db", "kv"]), 3);
  assert.equal(await a.sAdd("nr:tags:p2", ["db", "web"]), 2);
  assert.deepEqual((await b.sInter(["nr:tags:p1", "nr:tags:p2"])).sort(), ["db"]);
  assert.deepEqual((await b.sUnion(["nr:tags:p1", "nr:tags:p2"])).sort(), ["db", "kv", "rust", "web"]);
  assert.equal(await b.sIsMember("nr:tags:p1", "kv"), true);
  assert.equal(await a.sRem("nr:tags:p1", "kv"), 1);
  assert.equal(await b.sCard("nr:tags:p1"), 2);
  // Wrong types are Redis's error.
  await assert.rejects(a.hGet("nr:tags:p1", "x"), /WRONGTYPE/);
  // A transaction on one hash applies whole.
  const replies = await a.multi().hSet("nr:sess:2", "user", "bob").expire("nr:sess:2", 60).hGetAll("nr:sess:2").exec();
  assert.deepEqual([replies[0], replies[1], { ...replies[2] }], [1, true, { user: "bob" }]);
  assert.deepEqual({ ...(await b.hGetAll("nr:sess:2")) }, { user: "bob" });
  // SCAN over every key.
  const keys = await scanAll(async (cursor) => {
    const r = await b.scan(cursor, { COUNT: 7 });
    return [r.cursor, r.keys];
  });
  for (const k of ["nr:cache:1", "nr:sess:1", "nr:sess:2", "nr:tags:p1", "nr:tags:p2"]) {
    assert.ok(keys.has(k), `SCAN missed ${k}`);
  }
  assert.equal(await b.type("nr:sess:1"), "hash");
  assert.equal(await b.type("nr:tags:p1"), "set");
  await a.quit();
  await b.quit();
  return require("redis/package.json").version;
}

async function ioredis() {
  const a = new Redis({ host: "127.0.0.1", port: portA, password, lazyConnect: true });
  const b = new Redis({ host: "127.0.0.1", port: portB, password, lazyConnect: true });
  await a.connect();
  await b.connect();
  assert.equal(await a.setex("io:cache:1", 60, "page"), "OK");
  assert.equal(await b.get("io:cache:1"), "page");
  assert.equal(await a.hset("io:sess:1", { user: "ada", visits: "1" }), 2);
  assert.equal(await a.expire("io:sess:1", 3600), 1);
  assert.deepEqual(await b.hgetall("io:sess:1"), { user: "ada", visits: "1" });
  assert.equal(await b.hincrby("io:sess:1", "visits", 2), 3);
  assert.deepEqual(await b.hmget("io:sess:1", "user", "nosuch"), ["ada", null]);
  assert.equal(await a.sadd("io:tags:p1", "rust", "db"), 2);
  assert.equal(await a.sadd("io:tags:p2", "db"), 1);
  assert.deepEqual(await b.sinter("io:tags:p1", "io:tags:p2"), ["db"]);
  assert.equal(await b.smismember("io:tags:p1", "rust", "go").then((r) => r.join(",")), "1,0");
  await assert.rejects(a.sadd("io:sess:1", "x"), /WRONGTYPE/);
  const replies = await a.multi().sadd("io:tags:p3", "a", "b").srem("io:tags:p3", "a").smembers("io:tags:p3").exec();
  assert.deepEqual(replies, [[null, 2], [null, 1], [null, ["b"]]]);
  const keys = await new Promise((resolve, reject) => {
    const found = new Set();
    b.scanStream({ count: 5 })
      .on("data", (page) => page.forEach((k) => found.add(k)))
      .on("end", () => resolve(found))
      .on("error", reject);
  });
  for (const k of ["io:cache:1", "io:sess:1", "io:tags:p1", "io:tags:p2", "io:tags:p3"]) {
    assert.ok(keys.has(k), `scanStream missed ${k}`);
  }
  // FLUSHDB in a test fixture: every key of the bucket is gone, on every node.
  assert.equal(await a.flushdb(), "OK");
  assert.equal(await b.dbsize(), 0);
  assert.deepEqual(await b.hgetall("io:sess:1"), {});
  assert.equal(await b.exists("io:cache:1", "nr:sess:1", "nr:tags:p1"), 0);
  a.disconnect();
  b.disconnect();
  return require("ioredis/package.json").version;
}

(async () => {
  console.log(`node-redis ${await nodeRedis()}: ok`);
  console.log(`ioredis ${await ioredis()}: ok`);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
