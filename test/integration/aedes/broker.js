// broker.js: an Aedes broker for mqtt-relay's interoperability tests (test_aedes.py).
//
//   node broker.js PORT
//
// Listens on 127.0.0.1:PORT (MQTT 3.1 and 3.1.1: Aedes does not speak MQTT 5) and logs to
// stderr, one line per event, in the words of Mosquitto's log so that relaytest.py's log
// readers work unchanged:
//   "<unix time>: New client connected from HOST:PORT as ID (pV, cC, kK)."
//   "<unix time>: ID QOS FILTER"                       (one line per granted subscription)
//   "<unix time>: Client ID disconnected."
//   "<unix time>: Received PUBLISH from ID (dD, qQ, rR, mMID, 'TOPIC', ... (N bytes))"
// and "<unix time>: aedes ready on PORT" once it listens. SIGTERM closes it (exit 0).
'use strict'

const net = require('net')
const { Aedes } = require('aedes')

const port = parseInt(process.argv[2], 10)
if (!(port > 0 && port < 65536)) {
  console.error('usage: node broker.js PORT')
  process.exit(2)
}

function log (line) {
  process.stderr.write(Math.floor(Date.now() / 1000) + ': ' + line + '\n')
}

async function main () {
  const broker = await Aedes.createBroker()
  const versions = new Map()

  broker.on('client', (client) => {
    const s = client.conn
    const from = s && s.remoteAddress ? s.remoteAddress + ':' + s.remotePort : '?'
    client._relaytestFrom = from
  })
  broker.on('clientReady', (client) => {
    const v = client.version === 3 ? 1 : client.version === 4 ? 2 : client.version
    versions.set(client.id, v)
    log('New client connected from ' + (client._relaytestFrom || '?') + ' as ' + client.id +
        ' (p' + v + ', c' + (client.clean ? 1 : 0) + ', k' + (client.keepalive || 0) + ').')
  })
  broker.on('clientDisconnect', (client) => log('Client ' + client.id + ' disconnected.'))
  broker.on('clientError', (client, err) => log('Client ' + (client && client.id) +
                                                 ' error: ' + err.message))
  broker.on('connectionError', (client, err) => log('Connection error: ' + err.message))
  broker.on('subscribe', (subs, client) => {
    for (const s of subs) log(client.id + ' ' + s.qos + ' ' + s.topic)
  })
  broker.on('publish', (packet, client) => {
    if (!client) return // the broker's own $SYS messages
    const n = packet.payload ? packet.payload.length : 0
    log('Received PUBLISH from ' + client.id + ' (d' + (packet.dup ? 1 : 0) + ', q' +
        packet.qos + ', r' + (packet.retain ? 1 : 0) + ', m' + (packet.messageId || 0) +
        ", '" + packet.topic + "', ... (" + n + ' bytes))')
  })

  const server = net.createServer(broker.handle)
  server.listen(port, '127.0.0.1', () => log('aedes ready on ' + port))
  const stop = () => {
    server.close()
    broker.close(() => process.exit(0))
    setTimeout(() => process.exit(0), 2000).unref()
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

main().catch((e) => {
  log('aedes failed: ' + (e && e.stack ? e.stack : e))
  process.exit(1)
})
