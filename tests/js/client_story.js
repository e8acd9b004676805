// Drives static/pigeon-client.js the way a web page would (run by tests/integration/js_client.rs
// with `node --experimental-websocket`): connect, receive, lose the connection, come back with
// `since=` and topic offsets, and get exactly what was missed, in order.
"use strict";
const PigeonClient = require("../../static/pigeon-client.js");

const [url, token] = process.argv.slice(2);
const user = [];
const topic = [];
let dropped = false;
let opens = 0;

const client = new PigeonClient(url, {
  token,
  topics: ["news"],
  minDelay: 200,
  onOpen: () => {
    opens += 1;
    if (opens === 1) console.log("ready");
  },
  onPush: (push) => {
    (push.topic ? topic : user).push(push.body);
    if (!dropped && user.length === 1 && topic.length === 1) {
      dropped = true;
      // The network drops (not a close by the page): the client must come back by itself.
      client.socket.close(4000, "simulated drop");
    }
    if (user.length === 3 && topic.length === 2) {
      console.log(JSON.stringify({ user, topic, opens }));
      client.close();
      process.exit(0);
    }
  },
  onClose: () => {
    if (dropped && opens === 1) console.log("dropped");
  },
  onError: (e) => console.error("error frame", JSON.stringify(e)),
});
client.start();
setTimeout(() => {
  console.error("timed out", JSON.stringify({ user, topic, opens }));
  process.exit(1);
}, 15000);
