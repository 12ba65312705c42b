// Reads every record of the topics named on the command line with KafkaJS
// at its defaults (a consumer group, from the beginning) and prints one JSON
// line per record to stdout. Exits 0 once each topic's records up to the end
// offsets seen at start have been read, 1 on any error — a codec KafkaJS
// does not implement, for one, crashes the consumer.
//
//   node consume.js BROKER GROUP TOPIC...
"use strict";
const { Kafka, logLevel } = require("kafkajs");

const [broker, groupId, ...topics] = process.argv.slice(2);
if (!broker || !groupId || topics.length === 0) {
  console.error("usage: node consume.js BROKER GROUP TOPIC...");
  process.exit(2);
}

function fail(msg) {
  console.error("kafkajs: " + msg);
  process.exit(1);
}

async function main() {
  const kafka = new Kafka({ clientId: "trackops-interop", brokers: [broker], logLevel: logLevel.ERROR, retry: { retries: 3 } });
  const admin = kafka.admin();
  await admin.connect();
  // What must be read: every partition up to its end offset now.
  const remaining = new Map();
  for (const topic of topics) {
    for (const p of await admin.fetchTopicOffsets(topic)) {
      const left = Number(p.high) - Number(p.low);
      if (left > 0) remaining.set(`${topic}/${p.partition}`, Number(p.high));
    }
  }
  await admin.disconnect();
  const consumer = kafka.consumer({ groupId });
  consumer.on(consumer.events.CRASH, e => fail("consumer crashed: " + (e.payload && e.payload.error ? e.payload.error.message : e)));
  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: true });
  const done = new Promise(resolve => {
    if (remaining.size === 0) resolve();
    consumer.run({
      eachMessage: async ({ topic, partition, message }) => {
        const headers = {};
        for (const [k, v] of Object.entries(message.headers || {})) headers[k] = v === null || v === undefined ? null : v.toString();
        process.stdout.write(JSON.stringify({
          topic, partition, offset: Number(message.offset),
          key: message.key === null ? null : message.key.toString(),
          value: message.value === null ? null : message.value.toString(),
          headers,
        }) + "\n");
        const key = `${topic}/${partition}`;
        if (remaining.has(key) && Number(message.offset) + 1 >= remaining.get(key)) {
          remaining.delete(key);
          if (remaining.size === 0) resolve();
        }
      },
    }).catch(e => fail("run: " + e.message));
  });
  await done;
  await consumer.disconnect();
}

main().then(() => process.exit(0), e => fail(e.message));
