'use strict'
/*
 * Differential test: mqttcodec (our C codec, through mqc_diff) against mqtt-packet (the codec
 * under MQTT.js and Aedes), in both directions.
 *
 *   node->C  mqtt-packet generates packets (a fixed table plus randomised ones from a seed);
 *            mqc_diff decodes each, prints a canonical line, and re-encodes what it decoded.
 *            Checked: decode result, every field, and the re-encoded bytes.
 *   C->node  mqc_diff encodes packets (its own table plus randomised ones); mqtt-packet parses
 *            each; checked: every field against what mqc_diff says it encoded.
 *
 * Any disagreement fails the run unless known-differences.json lists it: each entry there is
 * a difference investigated against the specification (see README.md), matched here by id.
 *
 * usage: node diff.js --mqc-diff PATH --work DIR [--seed N] [--count N] [--verbose]
 * exit:  0 all agree (or only known differences), 1 disagreement, 2 usage / setup error.
 */
const fs = require('fs')
const path = require('path')
const { spawnSync } = require('child_process')

const MP_VERSION = '9.0.2'

function loadMqttPacket () {
  const dir = process.env.MQC_DIFF_NODE_MODULES
  const base = dir ? path.join(dir, 'mqtt-packet') : 'mqtt-packet'
  const mp = require(base)
  const pkgJson = require(dir ? path.join(base, 'package.json') : 'mqtt-packet/package.json')
  const constants = require(dir ? path.join(base, 'constants') : 'mqtt-packet/constants')
  if (pkgJson.version !== MP_VERSION) {
    throw new Error(`mqtt-packet ${pkgJson.version} installed, ${MP_VERSION} pinned: run npm ci`)
  }
  return { mp, constants, version: pkgJson.version }
}

/* ---- deterministic PRNG (mulberry32) -------------------------------------------------- */
function makeRng (seed) {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const r = {
    f: next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)), /* inclusive */
    bool: (p = 0.5) => next() < p,
    pick: (arr) => arr[Math.floor(next() * arr.length)]
  }
  return r
}

/* ---- helpers ---------------------------------------------------------------------------- */
const hexOf = (x) => {
  if (x === undefined || x === null) return ''
  if (Buffer.isBuffer(x)) return x.toString('hex')
  return Buffer.from(String(x), 'utf8').toString('hex')
}

/* mqtt-packet's property names, ids and types, from its own constants. */
let MPC = null
const BYTE_TYPES = new Set(['byte'])

/* Canonical property list: [[id, value], ...]; numbers for numeric and byte types, hex for
 * strings/binary, [nameHex, valueHex] for user properties. mqtt-packet keeps properties in an
 * object (one key per property, repeats as arrays, user properties grouped by name), so the
 * order between different identifiers, and between user properties of different names, is
 * not observable: sort by id, and user properties stably by name. */
function sortProps (list) {
  const withIdx = list.map((e, i) => ({ e, i }))
  withIdx.sort((a, b) => {
    if (a.e[0] !== b.e[0]) return a.e[0] - b.e[0]
    if (a.e[0] === 0x26) {
      const an = a.e[1][0]; const bn = b.e[1][0]
      if (an !== bn) return an < bn ? -1 : 1
    }
    return a.i - b.i
  })
  return withIdx.map(x => x.e)
}

function propsFromMp (p) {
  if (!p) return []
  const out = []
  for (const name of Object.keys(p)) {
    const v = p[name]
    if (v === undefined) continue
    const id = MPC.properties[name]
    if (id === undefined) throw new Error('unknown mqtt-packet property ' + name)
    const type = MPC.propertiesTypes[name]
    if (name === 'userProperties') {
      for (const k of Object.keys(v)) {
        const vals = Array.isArray(v[k]) ? v[k] : [v[k]]
        for (const x of vals) out.push([id, [hexOf(k), hexOf(String(x))]])
      }
      continue
    }
    const vals = Array.isArray(v) ? v : [v]
    for (const x of vals) {
      if (BYTE_TYPES.has(type)) out.push([id, x ? 1 : 0])
      else if (type === 'string') out.push([id, hexOf(x)])
      else if (type === 'binary') out.push([id, hexOf(x)])
      else out.push([id, Number(x)])
    }
  }
  return sortProps(out)
}

/* The C side prints properties in wire order; canonicalise them the same way. */
function propsFromC (list) {
  return sortProps((list || []).map(e => [e[0], e[1]]))
}

/* Canonical packet from a mqtt-packet object (what we gave its generator, or what its parser
 * returned) for protocol version v. */
function canonFromMp (o, v) {
  const t = o.cmd
  const c = { type: t }
  const v5 = v === 5
  switch (t) {
    case 'connect': {
      c.protocolId = o.protocolId || 'MQTT'
      c.protocolVersion = o.protocolVersion || 4
      c.bridge = !!o.bridgeMode
      c.clean = o.clean === undefined ? true : !!o.clean
      c.keepalive = o.keepalive || 0
      c.clientId = hexOf(o.clientId || '')
      if (o.will) {
        c.will = {
          qos: o.will.qos || 0,
          retain: !!o.will.retain,
          topic: hexOf(o.will.topic),
          payload: hexOf(o.will.payload),
          props: c.protocolVersion === 5 ? propsFromMp(o.will.properties) : []
        }
      } else {
        c.will = null
      }
      c.username = o.username == null ? null : hexOf(o.username)
      c.password = o.password == null ? null : hexOf(o.password)
      c.props = c.protocolVersion === 5 ? propsFromMp(o.properties) : []
      break
    }
    case 'connack':
      c.sessionPresent = !!o.sessionPresent
      c.code = (v5 ? o.reasonCode : o.returnCode) || 0
      c.props = v5 ? propsFromMp(o.properties) : []
      break
    case 'publish':
      c.qos = o.qos || 0
      c.dup = !!o.dup
      c.retain = !!o.retain
      c.topic = hexOf(o.topic)
      c.messageId = c.qos > 0 ? o.messageId : 0
      c.payload = hexOf(o.payload)
      c.props = v5 ? propsFromMp(o.properties) : []
      break
    case 'puback': case 'pubrec': case 'pubrel': case 'pubcomp':
      c.messageId = o.messageId
      c.code = v5 ? (o.reasonCode || 0) : 0
      c.props = v5 ? propsFromMp(o.properties) : []
      break
    case 'subscribe':
      c.messageId = o.messageId
      c.props = v5 ? propsFromMp(o.properties) : []
      c.subs = o.subscriptions.map(s => ({
        topic: hexOf(s.topic),
        qos: s.qos,
        nl: v5 ? !!s.nl : false,
        rap: v5 ? !!s.rap : false,
        rh: v5 ? (s.rh || 0) : 0
      }))
      break
    case 'suback':
      c.messageId = o.messageId
      c.props = v5 ? propsFromMp(o.properties) : []
      c.codes = o.granted.slice()
      break
    case 'unsubscribe':
      c.messageId = o.messageId
      c.props = v5 ? propsFromMp(o.properties) : []
      c.topics = o.unsubscriptions.map(hexOf)
      break
    case 'unsuback':
      c.messageId = o.messageId
      c.props = v5 ? propsFromMp(o.properties) : []
      c.codes = v5 ? o.granted.slice() : []
      break
    case 'pingreq': case 'pingresp':
      break
    case 'disconnect': case 'auth':
      c.code = v5 ? (o.reasonCode || 0) : 0
      c.props = v5 ? propsFromMp(o.properties) : []
      break
    default:
      throw new Error('unknown cmd ' + t)
  }
  return c
}

/* Canonical packet from a line printed by mqc_diff. */
function canonFromC (p) {
  const c = JSON.parse(JSON.stringify(p))
  if ('props' in c) c.props = propsFromC(c.props)
  if (c.will) c.will.props = propsFromC(c.will.props)
  return c
}

/* First difference between two canonical values, as a path, or null. */
function firstDiff (a, b, p = '') {
  if (a === b) return null
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') {
    return `${p || '.'}: ${JSON.stringify(a)} != ${JSON.stringify(b)}`
  }
  if (Array.isArray(a) !== Array.isArray(b)) return `${p}: array vs object`
  if (Array.isArray(a)) {
    const n = Math.max(a.length, b.length)
    for (let i = 0; i < n; i++) {
      if (i >= a.length || i >= b.length) {
        return `${p}[${i}]: ${JSON.stringify(a[i])} != ${JSON.stringify(b[i])} (lengths ${a.length}, ${b.length})`
      }
      const d = firstDiff(a[i], b[i], `${p}[${i}]`)
      if (d) return d
    }
    return null
  }
  const keys = new Set([...Object.keys(a), ...Object.keys(b)])
  for (const k of [...keys].sort()) {
    const d = firstDiff(a[k], b[k], `${p}.${k}`)
    if (d) return d
  }
  return null
}

/* ---- binary record files: [u8 version][u32 BE length][bytes] ------------------------------ */
function writeRecords (file, recs) {
  const parts = []
  for (const r of recs) {
    const h = Buffer.alloc(5)
    h.writeUInt8(r.v, 0)
    h.writeUInt32BE(r.bytes.length, 1)
    parts.push(h, r.bytes)
  }
  fs.writeFileSync(file, Buffer.concat(parts))
}

function readRecords (file) {
  const b = fs.readFileSync(file)
  const out = []
  let off = 0
  while (off < b.length) {
    if (b.length - off < 5) throw new Error(`${file}: truncated record header at ${off}`)
    const v = b.readUInt8(off)
    const n = b.readUInt32BE(off + 1)
    off += 5
    if (b.length - off < n) throw new Error(`${file}: truncated record at ${off}`)
    out.push({ v, bytes: b.subarray(off, off + n) })
    off += n
  }
  return out
}

/* ---- mqtt-packet parsing of one whole packet --------------------------------------------- */
function mpParse (mp, bytes, v) {
  const parser = mp.parser({ protocolVersion: v })
  const pkts = []
  let err = null
  parser.on('packet', (p) => pkts.push(p))
  parser.on('error', (e) => { if (!err) err = e })
  let left
  try {
    left = parser.parse(bytes)
  } catch (e) {
    err = err || e
  }
  if (err) return { err: err.message || String(err) }
  if (pkts.length !== 1) return { err: `parser emitted ${pkts.length} packets, ${left} bytes left` }
  if (left !== 0) return { err: `parser left ${left} bytes` }
  return { pkt: pkts[0] }
}

/* ---- value generators ------------------------------------------------------------------------ */
/* Code points that are valid in an MQTT UTF-8 string, including ones a sloppy validator gets
 * wrong: controls (allowed, "SHOULD NOT"), U+FEFF (must not be stripped [MQTT-1.5.4-3]),
 * noncharacters, the edges of the surrogate gap, 2/3/4-byte forms and U+10FFFF. */
const SPECIAL_CP = [0x01, 0x1f, 0x7f, 0x80, 0x85, 0x9f, 0xe9, 0x7ff, 0x800, 0x4e2d, 0xd7ff,
  0xe000, 0xfeff, 0xfffd, 0xffff, 0x10000, 0x1f600, 0x10ffff]
const WORD_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.: '

function rChar (r) {
  if (r.bool(0.85)) return r.pick(WORD_CHARS)
  return String.fromCodePoint(r.pick(SPECIAL_CP))
}
function rText (r, maxChars, minChars = 0) {
  const n = r.int(minChars, maxChars)
  let s = ''
  for (let i = 0; i < n; i++) s += rChar(r)
  return s
}
function rBytes (r, n) {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = r.int(0, 255)
  return b
}
function rLen (r) {
  const x = r.f()
  if (x < 0.30) return 0
  if (x < 0.85) return r.int(1, 40)
  if (x < 0.97) return r.int(41, 400)
  return r.int(401, 20000)
}
function rLevel (r) {
  /* a topic level: no '/', '+', '#' */
  const n = r.int(0, 8)
  let s = ''
  for (let i = 0; i < n; i++) {
    const ch = rChar(r)
    s += ch
  }
  return s
}
function rTopicName (r) {
  const n = r.int(1, 5)
  const lv = []
  for (let i = 0; i < n; i++) lv.push(rLevel(r))
  let t = lv.join('/')
  if (r.bool(0.05)) t = '$' + t
  if (t === '') t = r.bool() ? '/' : 'x'
  return t
}
function rFilter (r, allowShare = true) {
  const n = r.int(1, 5)
  const lv = []
  for (let i = 0; i < n; i++) {
    const x = r.f()
    if (x < 0.2) lv.push('+')
    else if (x < 0.28 && i === n - 1) lv.push('#')
    else lv.push(rLevel(r))
  }
  let f = lv.join('/')
  if (f === '') f = '/'
  if (allowShare && r.bool(0.1)) {
    let g = ''
    const gl = r.int(1, 6)
    for (let i = 0; i < gl; i++) g += r.pick('abcdefgXYZ019_-')
    f = (r.bool(0.8) ? '$share/' : '$oshare/') + g + '/' + f
  }
  return f
}
function rU32 (r) {
  return r.pick([0, 1, 59, 3600, 0x7fffffff, 0xffffffff, r.int(0, 0xffffffff)])
}
function rU16 (r, min = 0) {
  return Math.max(min, r.pick([0, 1, 10, 127, 128, 255, 256, 0xffff, r.int(0, 0xffff)]))
}
function rVarint (r) {
  /* Subscription Identifier: 1 .. 268435455, biased to the varint size edges */
  return r.pick([1, 127, 128, 16383, 16384, 2097151, 2097152, 268435455, r.int(1, 268435455)])
}
const USER_NAMES = ['k', 'key', 'relay-path', 'é', '😀', 'a b', 'x', '1', '22']
function rUserProps (r) {
  const n = r.int(0, 4)
  if (!n) return undefined
  const up = {}
  for (let i = 0; i < n; i++) {
    const k = r.bool(0.7) ? r.pick(USER_NAMES) : rText(r, 6, 1)
    const val = rText(r, 10, 1) /* see KD-USERPROP-EMPTY for empty values */
    if (k in up) {
      if (Array.isArray(up[k])) up[k].push(val)
      else up[k] = [up[k], val]
    } else {
      up[k] = val
    }
  }
  return up
}

/* Properties allowed in each place (MQTT 5.0 §2.2.2.2, table "Properties"), with a generator of
 * valid values for each. */
function rPropValue (r, name) {
  switch (name) {
    case 'payloadFormatIndicator':
    case 'requestResponseInformation':
    case 'requestProblemInformation':
    case 'retainAvailable':
    case 'wildcardSubscriptionAvailable':
    case 'subscriptionIdentifiersAvailable':
    case 'sharedSubscriptionAvailable':
      return r.bool()
    case 'maximumQoS': return r.int(0, 1)
    case 'sessionExpiryInterval':
    case 'willDelayInterval':
    case 'messageExpiryInterval': return rU32(r)
    case 'maximumPacketSize': return Math.max(1, rU32(r))
    case 'receiveMaximum': return rU16(r, 1)
    case 'topicAliasMaximum': return rU16(r)
    case 'serverKeepAlive': return rU16(r)
    case 'topicAlias': return rU16(r, 1)
    case 'responseTopic': return rTopicName(r)
    case 'contentType':
    case 'assignedClientIdentifier':
    case 'reasonString':
    case 'responseInformation':
    case 'serverReference':
    case 'authenticationMethod': return rText(r, 12)
    case 'correlationData':
    case 'authenticationData': return rBytes(r, r.int(0, 16))
    case 'subscriptionIdentifier': return rVarint(r)
    case 'userProperties': return rUserProps(r)
  }
  throw new Error('no generator for ' + name)
}
const CTX_PROPS = {
  connect: ['sessionExpiryInterval', 'receiveMaximum', 'maximumPacketSize', 'topicAliasMaximum',
    'requestResponseInformation', 'requestProblemInformation', 'userProperties',
    'authenticationMethod', 'authenticationData'],
  will: ['willDelayInterval', 'payloadFormatIndicator', 'messageExpiryInterval', 'contentType',
    'responseTopic', 'correlationData', 'userProperties'],
  connack: ['sessionExpiryInterval', 'receiveMaximum', 'maximumQoS', 'retainAvailable',
    'maximumPacketSize', 'assignedClientIdentifier', 'topicAliasMaximum', 'reasonString',
    'userProperties', 'wildcardSubscriptionAvailable', 'subscriptionIdentifiersAvailable',
    'sharedSubscriptionAvailable', 'serverKeepAlive', 'responseInformation', 'serverReference',
    'authenticationMethod', 'authenticationData'],
  publish: ['payloadFormatIndicator', 'messageExpiryInterval', 'topicAlias', 'responseTopic',
    'correlationData', 'userProperties', 'subscriptionIdentifier', 'contentType'],
  ack: ['reasonString', 'userProperties'],
  subscribe: ['subscriptionIdentifier', 'userProperties'],
  suback: ['reasonString', 'userProperties'],
  unsubscribe: ['userProperties'],
  unsuback: ['reasonString', 'userProperties'],
  disconnect: ['sessionExpiryInterval', 'reasonString', 'userProperties', 'serverReference'],
  auth: ['authenticationMethod', 'authenticationData', 'reasonString', 'userProperties']
}
function rProps (r, ctx, p = 0.3) {
  const props = {}
  let any = false
  for (const name of CTX_PROPS[ctx]) {
    if (!r.bool(p)) continue
    /* Authentication Data without Authentication Method is a Protocol Error [MQTT-3.1.2-?]:
     * only generate it together with a method. */
    if (name === 'authenticationData' && props.authenticationMethod === undefined) continue
    let val = rPropValue(r, name)
    if (name === 'subscriptionIdentifier' && ctx === 'publish' && r.bool(0.3)) {
      val = [val, rVarint(r)] /* may repeat in PUBLISH [MQTT-3.3.4-?] */
    }
    if (val === undefined) continue
    props[name] = val
    any = true
  }
  return any ? props : undefined
}

const RC = {
  connack5: [0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90,
    0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F],
  puback: [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99],
  pubrel: [0x00, 0x92],
  suback5: [0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2],
  unsuback5: [0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91],
  disconnect: [0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93,
    0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2],
  auth: [0x00, 0x18, 0x19]
}

const TYPES = ['connect', 'connack', 'publish', 'puback', 'pubrec', 'pubrel', 'pubcomp', 'subscribe',
  'suback', 'unsubscribe', 'unsuback', 'pingreq', 'pingresp', 'disconnect', 'auth']

/* One random valid packet of type t for version v, as a mqtt-packet object. */
function rPacket (r, t, v) {
  const v5 = v === 5
  const pid = () => r.pick([1, 2, 255, 256, 0x7fff, 0xffff, r.int(1, 0xffff)])
  switch (t) {
    case 'connect': {
      const o = { cmd: 'connect', protocolId: v === 3 ? 'MQIsdp' : 'MQTT', protocolVersion: v }
      o.clean = r.bool()
      o.keepalive = rU16(r)
      /* 3.1 needs a 1..23 character client id; 3.1.1/5.0 allow an empty one with Clean Session */
      o.clientId = v === 3 ? rText(r, 23, 1) : (o.clean && r.bool(0.2) ? '' : rText(r, 30, 1))
      if (v === 3 && Buffer.byteLength(o.clientId) > 23) o.clientId = 'c' + r.int(0, 99999)
      /* mqtt-packet cannot generate a 5.0 bridge CONNECT: level 5|0x80 falls through to 3
       * and the properties are counted but not written (see README, generator limits) */
      if (v !== 5 && r.bool(0.3)) o.bridgeMode = true
      if (r.bool(0.5)) {
        o.will = { topic: rTopicName(r), payload: r.bool() ? rBytes(r, rLen(r)) : rText(r, 20), qos: r.int(0, 2), retain: r.bool() }
        if (v5) o.will.properties = rProps(r, 'will')
      }
      if (r.bool(0.5)) o.username = rText(r, 20)
      if (o.username !== undefined && r.bool(0.6)) o.password = rBytes(r, r.int(0, 30))
      if (v5) o.properties = rProps(r, 'connect')
      return o
    }
    case 'connack': {
      const o = { cmd: 'connack' }
      const code = v5 ? r.pick(RC.connack5) : r.int(0, 5)
      if (v5) o.reasonCode = code
      else o.returnCode = code
      /* Session Present must be 0 with a non-zero code [MQTT-3.2.2-4] (5.0: [MQTT-3.2.2-6]) */
      o.sessionPresent = code === 0 ? r.bool() : false
      if (v5) o.properties = rProps(r, 'connack')
      return o
    }
    case 'publish': {
      const o = { cmd: 'publish', qos: r.int(0, 2), retain: r.bool() }
      o.dup = o.qos > 0 ? r.bool() : false
      if (o.qos > 0) o.messageId = pid()
      o.topic = rTopicName(r)
      o.payload = r.bool(0.8) ? rBytes(r, rLen(r)) : rText(r, 40)
      if (v5) {
        o.properties = rProps(r, 'publish')
        /* with a Topic Alias the topic may be empty [MQTT-3.3.2-8.. ] */
        if (o.properties && o.properties.topicAlias && r.bool(0.5)) o.topic = ''
      }
      return o
    }
    case 'puback': case 'pubrec': case 'pubrel': case 'pubcomp': {
      const o = { cmd: t, messageId: pid() }
      if (t === 'pubrel' && v === 3 && r.bool(0.3)) o.setDup = true /* 3.1 re-delivery */
      if (v5) {
        o.reasonCode = r.pick(t === 'puback' || t === 'pubrec' ? RC.puback : RC.pubrel)
        const props = rProps(r, 'ack')
        if (props) o.properties = props
      }
      return o
    }
    case 'subscribe': {
      const o = { cmd: 'subscribe', messageId: pid(), subscriptions: [] }
      if (v === 3 && r.bool(0.3)) o.dup = true
      const n = r.int(1, 6)
      for (let i = 0; i < n; i++) {
        const s = { topic: rFilter(r), qos: r.int(0, 2) }
        if (v5) {
          /* No Local on a shared subscription is a Protocol Error [MQTT-3.8.3-4] */
          s.nl = s.topic.startsWith('$share/') || s.topic.startsWith('$oshare/') ? false : r.bool()
          s.rap = r.bool()
          s.rh = r.int(0, 2)
        }
        o.subscriptions.push(s)
      }
      if (v5) {
        o.properties = rProps(r, 'subscribe')
        if (o.properties && Array.isArray(o.properties.subscriptionIdentifier)) {
          o.properties.subscriptionIdentifier = o.properties.subscriptionIdentifier[0]
        }
      }
      return o
    }
    case 'suback': {
      const o = { cmd: 'suback', messageId: pid(), granted: [] }
      const n = r.int(1, 8)
      for (let i = 0; i < n; i++) o.granted.push(r.pick(v5 ? RC.suback5 : (v === 4 ? [0, 1, 2, 0x80] : [0, 1, 2])))
      if (v5) o.properties = rProps(r, 'suback')
      return o
    }
    case 'unsubscribe': {
      const o = { cmd: 'unsubscribe', messageId: pid(), unsubscriptions: [] }
      if (v === 3 && r.bool(0.3)) o.dup = true
      const n = r.int(1, 6)
      for (let i = 0; i < n; i++) o.unsubscriptions.push(rFilter(r))
      if (v5) o.properties = rProps(r, 'unsubscribe')
      return o
    }
    case 'unsuback': {
      const o = { cmd: 'unsuback', messageId: pid() }
      if (v5) {
        o.granted = []
        const n = r.int(1, 8)
        for (let i = 0; i < n; i++) o.granted.push(r.pick(RC.unsuback5))
        o.properties = rProps(r, 'unsuback')
      }
      return o
    }
    case 'pingreq': case 'pingresp':
      return { cmd: t }
    case 'disconnect': {
      const o = { cmd: 'disconnect' }
      if (v5) {
        o.reasonCode = r.pick(RC.disconnect)
        o.properties = rProps(r, 'disconnect')
      }
      return o
    }
    case 'auth': {
      const o = { cmd: 'auth', reasonCode: r.pick(RC.auth) }
      o.properties = rProps(r, 'auth')
      return o
    }
  }
  throw new Error('type ' + t)
}

/* ---- the fixed node->C table --------------------------------------------------------------- */
/* Each entry: { name, v, pkt, expect: 'OK' or an MQC_E* name, kd: known-difference id }.
 * Entries with an error expectation are packets mqtt-packet generates (and parses) although the
 * specification forbids them: our codec must reject them. */
function fixedCases () {
  const big = Buffer.alloc(2 * 1024 * 1024 + 7, 0x5a)
  const mid = Buffer.alloc(16384 - 5, 0xa5)
  const c = []
  const ok = (name, v, pkt) => c.push({ name, v, pkt, expect: 'OK' })
  const bad = (name, v, pkt, expect, kd) => c.push({ name, v, pkt, expect, kd })
  for (const v of [3, 4, 5]) {
    const pid = v === 3 ? 'MQIsdp' : 'MQTT'
    ok(`connect-min-v${v}`, v, { cmd: 'connect', protocolId: pid, protocolVersion: v, clientId: 'c', clean: true, keepalive: 0 })
    ok(`connect-full-v${v}`, v, {
      cmd: 'connect', protocolId: pid, protocolVersion: v, clientId: 'client-é', clean: false, keepalive: 65535,
      will: { topic: 'will/t', payload: Buffer.from([0, 1, 2, 255]), qos: 2, retain: true, properties: v === 5 ? { willDelayInterval: 10, payloadFormatIndicator: true, messageExpiryInterval: 60, contentType: 'text/plain', responseTopic: 'r/t', correlationData: Buffer.from('cd'), userProperties: { a: 'b' } } : undefined },
      username: 'user', password: Buffer.from('pass'),
      properties: v === 5 ? { sessionExpiryInterval: 3600, receiveMaximum: 64, maximumPacketSize: 262144, topicAliasMaximum: 10, requestResponseInformation: true, requestProblemInformation: false, userProperties: { k: ['v1', 'v2'], z: 'y' }, authenticationMethod: 'SCRAM', authenticationData: Buffer.from([1, 2]) } : undefined
    })
    if (v !== 5) ok(`connect-bridge-v${v}`, v, { cmd: 'connect', protocolId: pid, protocolVersion: v, clientId: 'bridge', clean: false, keepalive: 60, bridgeMode: true })
    ok(`connect-will-qos1-empty-payload-v${v}`, v, { cmd: 'connect', protocolId: pid, protocolVersion: v, clientId: 'w', clean: true, keepalive: 5, will: { topic: 'a', payload: Buffer.alloc(0), qos: 1, retain: false } })
    ok(`connect-username-only-v${v}`, v, { cmd: 'connect', protocolId: pid, protocolVersion: v, clientId: 'u', clean: true, keepalive: 5, username: '' })
    if (v !== 3) ok(`connect-empty-clientid-v${v}`, v, { cmd: 'connect', protocolId: pid, protocolVersion: v, clientId: '', clean: true, keepalive: 5 })
    for (const code of (v === 5 ? [0, 0x80, 0x84, 0x9F] : [0, 1, 2, 3, 4, 5])) {
      ok(`connack-${code}-v${v}`, v, v === 5 ? { cmd: 'connack', sessionPresent: false, reasonCode: code } : { cmd: 'connack', sessionPresent: false, returnCode: code })
    }
    ok(`connack-session-present-v${v}`, v, v === 5 ? { cmd: 'connack', sessionPresent: true, reasonCode: 0, properties: { maximumQoS: 1, retainAvailable: false, receiveMaximum: 200, topicAliasMaximum: 10, serverKeepAlive: 60, assignedClientIdentifier: 'auto-1', wildcardSubscriptionAvailable: true, subscriptionIdentifiersAvailable: false, sharedSubscriptionAvailable: true, maximumPacketSize: 262144, responseInformation: 'ri', serverReference: 'other:1883', reasonString: 'ok', sessionExpiryInterval: 60, authenticationMethod: 'm', authenticationData: Buffer.from([9]), userProperties: { s: 't' } } } : { cmd: 'connack', sessionPresent: true, returnCode: 0 })
    for (const qos of [0, 1, 2]) {
      for (const retain of [false, true]) {
        for (const dup of qos ? [false, true] : [false]) {
          ok(`publish-q${qos}${retain ? '-retain' : ''}${dup ? '-dup' : ''}-v${v}`, v, { cmd: 'publish', qos, retain, dup, messageId: qos ? 42 : undefined, topic: 'a/b/c', payload: Buffer.from('hello') })
        }
      }
    }
    ok(`publish-empty-payload-v${v}`, v, { cmd: 'publish', qos: 0, topic: 'x', payload: Buffer.alloc(0) })
    ok(`publish-unicode-topic-v${v}`, v, { cmd: 'publish', qos: 1, messageId: 0xffff, topic: 'ü/中/😀/\u{10ffff}/\ufeff', payload: 'x' })
    ok(`publish-dollar-topic-v${v}`, v, { cmd: 'publish', qos: 0, topic: '$SYS/broker/uptime', payload: '1' })
    ok(`publish-slash-topics-v${v}`, v, { cmd: 'publish', qos: 0, topic: '/', payload: '' })
    ok(`publish-16k-v${v}`, v, { cmd: 'publish', qos: 1, messageId: 7, topic: 'big', payload: mid })
    ok(`publish-2MiB-v${v}`, v, { cmd: 'publish', qos: 2, messageId: 8, topic: 'bigger', payload: big })
    for (const t of ['puback', 'pubrec', 'pubrel', 'pubcomp']) {
      ok(`${t}-v${v}`, v, v === 5 ? { cmd: t, messageId: 1, reasonCode: 0 } : { cmd: t, messageId: 1 })
      if (v === 5) {
        const rc = t === 'puback' || t === 'pubrec' ? 0x10 : 0x92
        ok(`${t}-code-v5`, v, { cmd: t, messageId: 65535, reasonCode: rc })
        ok(`${t}-props-v5`, v, { cmd: t, messageId: 2, reasonCode: rc, properties: { reasonString: 'why', userProperties: { a: 'b', c: ['d', 'e'] } } })
      }
    }
    ok(`subscribe-one-v${v}`, v, { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/+/#', qos: 1 }] })
    ok(`subscribe-many-v${v}`, v, { cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: '#', qos: 0 }, { topic: '+', qos: 2 }, { topic: '$share/g/x/#', qos: 1 }, { topic: 'a//b', qos: 0 }, { topic: '/+/', qos: 1 }] })
    if (v === 5) {
      ok('subscribe-options-v5', 5, { cmd: 'subscribe', messageId: 3, properties: { subscriptionIdentifier: 268435455, userProperties: { u: 'v' } }, subscriptions: [{ topic: 'a', qos: 2, nl: true, rap: true, rh: 2 }, { topic: 'b', qos: 0, nl: false, rap: true, rh: 1 }, { topic: '$share/grp/c', qos: 1, nl: false, rap: false, rh: 0 }, { topic: '$oshare/grp/d/+', qos: 1, rh: 2 }] })
    }
    ok(`suback-v${v}`, v, { cmd: 'suback', messageId: 9, granted: v === 5 ? [0, 1, 2, 0x80, 0x8F, 0xA2] : (v === 4 ? [0, 1, 2, 0x80] : [0, 1, 2]) })
    ok(`unsubscribe-v${v}`, v, { cmd: 'unsubscribe', messageId: 10, unsubscriptions: ['a/b', '#', '$share/g/+'] })
    ok(`unsuback-v${v}`, v, v === 5 ? { cmd: 'unsuback', messageId: 11, granted: [0, 0x11, 0x80] } : { cmd: 'unsuback', messageId: 11 })
    /* 3.1 §2.1: DUP is set when re-delivering PUBLISH, PUBREL, SUBSCRIBE or UNSUBSCRIBE;
     * from 3.1.1 on, those flags are fixed at 0010 (KD-DUP-FLAGS) */
    const dupCases = [
      /* mqtt-packet cannot write a DUP PUBREL (it indexes its header table with DUP_MASK):
       * generate a plain one and set the bit (cs.setDup) */
      ['pubrel-dup', { cmd: 'pubrel', messageId: 5 }],
      ['subscribe-dup', { cmd: 'subscribe', messageId: 6, dup: true, subscriptions: [{ topic: 'a/#', qos: 1 }] }],
      ['unsubscribe-dup', { cmd: 'unsubscribe', messageId: 7, dup: true, unsubscriptions: ['a/#'] }]
    ]
    for (const [n, pkt] of dupCases) {
      if (v === 3) ok(`${n}-v3`, v, pkt)
      else bad(`${n}-v${v}`, v, pkt, 'MQC_EFLAGS', 'KD-DUP-FLAGS')
      if (pkt.cmd === 'pubrel') c[c.length - 1].setDup = true
    }
    ok(`pingreq-v${v}`, v, { cmd: 'pingreq' })
    ok(`pingresp-v${v}`, v, { cmd: 'pingresp' })
    ok(`disconnect-v${v}`, v, v === 5 ? { cmd: 'disconnect', reasonCode: 0 } : { cmd: 'disconnect' })
    if (v === 5) {
      ok('disconnect-props-v5', 5, { cmd: 'disconnect', reasonCode: 0x8E, properties: { sessionExpiryInterval: 0, reasonString: 'taken over', serverReference: 'b:1883', userProperties: { a: '1' } } })
      ok('auth-continue-v5', 5, { cmd: 'auth', reasonCode: 0x18, properties: { authenticationMethod: 'SCRAM-SHA-1', authenticationData: Buffer.from('data') } })
      ok('auth-success-v5', 5, { cmd: 'auth', reasonCode: 0 })
      ok('publish-alias-empty-topic-v5', 5, { cmd: 'publish', qos: 0, topic: '', payload: 'p', properties: { topicAlias: 3 } })
      ok('publish-all-props-v5', 5, { cmd: 'publish', qos: 1, messageId: 5, topic: 't', payload: 'p', properties: { payloadFormatIndicator: true, messageExpiryInterval: 4294967295, topicAlias: 65535, responseTopic: 'resp/é', correlationData: Buffer.from([0, 0xff]), userProperties: { 'relay-path': 'site-a,site-b', é: ['1', '2'] }, subscriptionIdentifier: [1, 128, 16384, 268435455], contentType: 'application/json' } })
      ok('publish-user-props-numeric-names-v5', 5, { cmd: 'publish', qos: 0, topic: 't', payload: '', properties: { userProperties: { 2: 'two', 1: 'one', b: 'x', a: ['y', 'z'] } } })
    }
  }

  /* Packets mqtt-packet generates and parses, but the specification forbids. */
  bad('publish-q0-dup-v4', 4, { cmd: 'publish', qos: 0, dup: true, topic: 'a', payload: 'x' }, 'MQC_EQOS', 'KD-DUP-QOS0')
  bad('publish-q0-dup-v5', 5, { cmd: 'publish', qos: 0, dup: true, topic: 'a', payload: 'x' }, 'MQC_EQOS', 'KD-DUP-QOS0')
  for (const v of [3, 4, 5]) {
    bad(`publish-wildcard-plus-v${v}`, v, { cmd: 'publish', qos: 0, topic: 'a/+/b', payload: 'x' }, 'MQC_ETOPIC', 'KD-TOPIC-WILDCARD')
    bad(`publish-wildcard-hash-v${v}`, v, { cmd: 'publish', qos: 1, messageId: 1, topic: '#', payload: 'x' }, 'MQC_ETOPIC', 'KD-TOPIC-WILDCARD')
    bad(`publish-pid0-v${v}`, v, { cmd: 'publish', qos: 1, messageId: 0, topic: 'a', payload: 'x' }, 'MQC_EPACKETID', 'KD-PACKETID-0')
    bad(`subscribe-pid0-v${v}`, v, { cmd: 'subscribe', messageId: 0, subscriptions: [{ topic: 'a', qos: 0 }] }, 'MQC_EPACKETID', 'KD-PACKETID-0')
    bad(`unsubscribe-pid0-v${v}`, v, { cmd: 'unsubscribe', messageId: 0, unsubscriptions: ['a'] }, 'MQC_EPACKETID', 'KD-PACKETID-0')
    bad(`publish-topic-nul-v${v}`, v, { cmd: 'publish', qos: 0, topic: Buffer.from('a\u0000b'), payload: 'x' }, 'MQC_EUTF8', 'KD-UTF8')
    bad(`publish-topic-surrogate-v${v}`, v, { cmd: 'publish', qos: 0, topic: Buffer.from([0x61, 0xed, 0xa0, 0x80]), payload: 'x' }, 'MQC_EUTF8', 'KD-UTF8')
    bad(`publish-topic-overlong-v${v}`, v, { cmd: 'publish', qos: 0, topic: Buffer.from([0xc0, 0xaf]), payload: 'x' }, 'MQC_EUTF8', 'KD-UTF8')
    bad(`subscribe-filter-bad-hash-v${v}`, v, { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/#/b', qos: 0 }] }, 'MQC_EFILTER', 'KD-FILTER')
    bad(`subscribe-filter-bad-plus-v${v}`, v, { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a+', qos: 0 }] }, 'MQC_EFILTER', 'KD-FILTER')
    bad(`subscribe-filter-empty-v${v}`, v, { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '', qos: 0 }] }, 'MQC_EFILTER', 'KD-FILTER')
    bad(`unsubscribe-filter-bad-v${v}`, v, { cmd: 'unsubscribe', messageId: 1, unsubscriptions: ['#/a'] }, 'MQC_EFILTER', 'KD-FILTER')
    bad(`subscribe-share-no-group-v${v}`, v, { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share//a', qos: 0 }] }, 'MQC_EFILTER', 'KD-FILTER')
    bad(`publish-empty-topic-v${v}`, v, { cmd: 'publish', qos: 0, topic: '', payload: 'x' }, 'MQC_ETOPIC', 'KD-TOPIC-EMPTY')
    bad(`connect-will-wildcard-topic-v${v}`, v, { cmd: 'connect', protocolId: v === 3 ? 'MQIsdp' : 'MQTT', protocolVersion: v, clientId: 'c', clean: true, keepalive: 0, will: { topic: 'a/+', payload: 'x', qos: 0 } }, 'MQC_ETOPIC', 'KD-TOPIC-WILDCARD')
  }
  bad('connect-mqtt-name-v3', 3, { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 3, clientId: 'c', clean: true, keepalive: 0 }, 'MQC_EPROTONAME', 'KD-PROTONAME')
  bad('connect-mqisdp-name-v4', 4, { cmd: 'connect', protocolId: 'MQIsdp', protocolVersion: 4, clientId: 'c', clean: true, keepalive: 0 }, 'MQC_EPROTONAME', 'KD-PROTONAME')
  bad('connect-will-qos3-v4', 4, { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'c', clean: true, keepalive: 0, will: { topic: 'a', payload: 'x', qos: 3 } }, ['MQC_EQOS', 'MQC_EWILL'], 'KD-WILL-QOS3')
  bad('connack-sp-nonzero-v4', 4, { cmd: 'connack', sessionPresent: true, returnCode: 5 }, 'MQC_EPROTOCOL', 'KD-CONNACK-SP')
  bad('connack-sp-nonzero-v5', 5, { cmd: 'connack', sessionPresent: true, reasonCode: 0x87 }, 'MQC_EPROTOCOL', 'KD-CONNACK-SP')
  bad('connack-rc6-v4', 4, { cmd: 'connack', sessionPresent: false, returnCode: 6 }, 'MQC_EREASON', 'KD-REASON')
  bad('connack-rc-unknown-v5', 5, { cmd: 'connack', sessionPresent: false, reasonCode: 0x01 }, 'MQC_EREASON', 'KD-REASON')
  bad('subscribe-nolocal-share-v5', 5, { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/g/a', qos: 0, nl: true }] }, 'MQC_ESUBOPTS', 'KD-NOLOCAL-SHARE')
  bad('suback-qos3-v4', 4, { cmd: 'suback', messageId: 1, granted: [3] }, 'MQC_EREASON', 'KD-REASON')
  bad('publish-prop-not-allowed-v5', 5, { cmd: 'publish', qos: 0, topic: 'a', payload: 'x', properties: { sessionExpiryInterval: 1 } }, 'MQC_EPROPID', 'KD-PROP-CONTEXT')
  bad('connect-prop-not-allowed-v5', 5, { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'c', clean: true, keepalive: 0, properties: { topicAlias: 1 } }, 'MQC_EPROPID', 'KD-PROP-CONTEXT')
  bad('will-prop-not-allowed-v5', 5, { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'c', clean: true, keepalive: 0, will: { topic: 'a', payload: 'x', qos: 0, properties: { sessionExpiryInterval: 1 } } }, 'MQC_EPROPID', 'KD-PROP-CONTEXT')
  bad('puback-prop-not-allowed-v5', 5, { cmd: 'puback', messageId: 1, reasonCode: 0, properties: { contentType: 'x' } }, 'MQC_EPROPID', 'KD-PROP-CONTEXT')
  bad('publish-prop-dup-v5', 5, { cmd: 'publish', qos: 0, topic: 'a', payload: 'x', properties: { contentType: ['a', 'b'] } }, 'MQC_EPROPDUP', 'KD-PROP-DUP')
  bad('subscribe-subid-dup-v5', 5, { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a', qos: 0 }], properties: { subscriptionIdentifier: [1, 2] } }, 'MQC_EPROPDUP', 'KD-PROP-DUP')
  bad('connect-receive-max-0-v5', 5, { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'c', clean: true, keepalive: 0, properties: { receiveMaximum: 0 } }, 'MQC_EPROPVAL', 'KD-PROP-VALUE')
  bad('connect-max-packet-0-v5', 5, { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'c', clean: true, keepalive: 0, properties: { maximumPacketSize: 0 } }, 'MQC_EPROPVAL', 'KD-PROP-VALUE')
  bad('publish-topic-alias-0-v5', 5, { cmd: 'publish', qos: 0, topic: 'a', payload: 'x', properties: { topicAlias: 0 } }, 'MQC_EPROPVAL', 'KD-PROP-VALUE')
  bad('publish-subid-0-v5', 5, { cmd: 'publish', qos: 0, topic: 'a', payload: 'x', properties: { subscriptionIdentifier: 0 } }, 'MQC_EPROPVAL', 'KD-PROP-VALUE')
  bad('puback-code-unknown-v5', 5, { cmd: 'puback', messageId: 1, reasonCode: 0x92 }, 'MQC_EREASON', 'KD-REASON')
  bad('connect-auth-data-no-method-v5', 5, { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'c', clean: true, keepalive: 0, properties: { authenticationData: Buffer.from([1]) } }, 'MQC_EPROTOCOL', 'KD-AUTH-DATA')
  return c
}

/* ---- known differences --------------------------------------------------------------------- */
function loadKnown () {
  const f = path.join(__dirname, 'known-differences.json')
  const list = JSON.parse(fs.readFileSync(f, 'utf8'))
  const m = new Map()
  const readme = fs.readFileSync(path.join(__dirname, 'README.md'), 'utf8')
  for (const k of list) {
    if (!readme.includes(`| ${k.id} |`)) throw new Error(`${k.id} is not documented in README.md`)
    m.set(k.id, k)
  }
  return m
}

/* ---- main ---------------------------------------------------------------------------------- */
function parseArgs (argv) {
  const a = { seed: 20261124, count: 3000, verbose: false }
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i]
    if (k === '--mqc-diff') a.mqcDiff = argv[++i]
    else if (k === '--work') a.work = argv[++i]
    else if (k === '--seed') a.seed = Number(argv[++i])
    else if (k === '--count') a.count = Number(argv[++i])
    else if (k === '--verbose') a.verbose = true
    else throw new Error('unknown argument ' + k)
  }
  if (!a.mqcDiff || !a.work) throw new Error('usage: node diff.js --mqc-diff PATH --work DIR [--seed N] [--count N]')
  return a
}

function runC (exe, args) {
  const res = spawnSync(exe, args, { maxBuffer: 1 << 30, encoding: 'utf8' })
  if (res.error) throw res.error
  if (res.status !== 0) {
    throw new Error(`${exe} ${args.join(' ')} exited ${res.status} ${res.signal || ''}\n${res.stderr}`)
  }
  if (res.stderr) process.stderr.write(res.stderr)
  return res.stdout.split('\n').filter(l => l.length).map(l => JSON.parse(l))
}

function main () {
  const args = parseArgs(process.argv)
  const { mp, constants, version } = loadMqttPacket()
  MPC = constants
  const known = loadKnown()
  fs.mkdirSync(args.work, { recursive: true })
  const problems = []
  const kdSeen = new Map()
  const noteKnown = (id, what) => {
    if (!known.has(id)) {
      problems.push(`${what}: claims known difference ${id}, which known-differences.json lacks`)
      return
    }
    kdSeen.set(id, (kdSeen.get(id) || 0) + 1)
  }

  /* ---------- node -> C ---------- */
  const cases = fixedCases()
  const nFixed = cases.length
  const r = makeRng(args.seed)
  for (let i = 0; i < args.count; i++) {
    const v = r.pick([3, 4, 5])
    const types = v === 5 ? TYPES : TYPES.filter(t => t !== 'auth')
    const t = r.pick(types)
    cases.push({ name: `random-${i}-${t}-v${v}`, v, pkt: rPacket(r, t, v), expect: 'OK' })
  }
  const recs = []
  for (const cs of cases) {
    const expectCanon = canonFromMp(cs.pkt, cs.v)
    let bytes
    try {
      bytes = mp.generate(JSON.parse(JSON.stringify(cs.pkt, (k, val) => val), reviveBuffers), { protocolVersion: cs.v })
    } catch (e) {
      throw new Error(`mqtt-packet cannot generate ${cs.name}: ${e.message}`)
    }
    if (cs.setDup || cs.pkt.setDup) bytes[0] |= 0x08
    cs.bytes = bytes
    cs.canon = expectCanon
    recs.push({ v: cs.v, bytes })
  }
  const n2cBin = path.join(args.work, 'n2c.bin')
  writeRecords(n2cBin, recs)
  fs.writeFileSync(path.join(args.work, 'n2c.json'), JSON.stringify(cases.map(cs => ({
    name: cs.name, v: cs.v, hex: cs.bytes.length > 4096 ? cs.bytes.subarray(0, 64).toString('hex') + '...' : cs.bytes.toString('hex'), expect: cs.expect, kd: cs.kd, canon: cs.expect === 'OK' ? cs.canon : undefined
  })), null, 1))
  const out = runC(args.mqcDiff, ['decode', n2cBin])
  if (out.length !== cases.length) {
    problems.push(`node->C: ${cases.length} packets written, mqc_diff printed ${out.length} lines`)
  }
  let n2cAgree = 0; let n2cKnown = 0; let n2cReencSame = 0
  for (let i = 0; i < Math.min(out.length, cases.length); i++) {
    const cs = cases[i]
    const o = out[i]
    const tag = `node->C #${i} ${cs.name} [${cs.bytes.length > 64 ? cs.bytes.subarray(0, 64).toString('hex') + '...' : cs.bytes.toString('hex')}]`
    if (o.i !== i) { problems.push(`${tag}: line index ${o.i}`); continue }
    if (cs.expect !== 'OK') {
      const want = Array.isArray(cs.expect) ? cs.expect : [cs.expect]
      if (want.includes(o.err)) {
        noteKnown(cs.kd, tag); n2cKnown++
      } else {
        /* mqtt-packet generated it; if we accept it too, that is a codec leniency to fix */
        problems.push(`${tag}: expected our codec to reject with ${cs.expect} (${cs.kd}), got ${o.err}`)
      }
      continue
    }
    if (o.err !== 'MQC_OK') {
      const mpRes = mpParse(mp, cs.bytes, cs.v)
      problems.push(`${tag}: our decode failed ${o.err}; mqtt-packet parses it ${mpRes.err ? 'NOT (' + mpRes.err + ')' : 'fine'}`)
      continue
    }
    const ours = canonFromC(o.pkt)
    const d = firstDiff(cs.canon, ours)
    if (d) {
      const kd = explainFieldDiff(cs, ours)
      if (kd) { noteKnown(kd, tag); n2cKnown++ } else problems.push(`${tag}: field mismatch (mqtt-packet input vs ours) ${d}`)
      continue
    }
    /* Our re-encoding of what we decoded */
    if (o.reenc_err !== 'MQC_OK') {
      problems.push(`${tag}: re-encode failed ${o.reenc_err}`)
      continue
    }
    const reenc = Buffer.from(o.reenc, 'hex')
    if (reenc.equals(cs.bytes)) {
      n2cReencSame++
      n2cAgree++
      continue
    }
    /* A different encoding is acceptable only where the spec allows two forms (KD-SHORT-FORM),
     * and mqtt-packet must read ours back to the same packet. */
    const kd = explainReencDiff(cs, reenc)
    const back = mpParse(mp, reenc, cs.v)
    if (!kd) {
      problems.push(`${tag}: our re-encoding differs: ${reenc.toString('hex')}`)
    } else if (back.err) {
      const kd2 = explainParseReject(null, cs.canon, { v: cs.v, bytes: reenc }, back.err)
      if (kd2) { noteKnown(kd, tag); noteKnown(kd2, tag); n2cAgree++; continue }
      problems.push(`${tag}: our re-encoding ${reenc.toString('hex')} (${kd}) is not parsed by mqtt-packet: ${back.err}`)
    } else {
      const d2 = firstDiff(cs.canon, canonFromMp(back.pkt, cs.v))
      if (d2) problems.push(`${tag}: our re-encoding ${reenc.toString('hex')} reads back differently in mqtt-packet: ${d2}`)
      else { noteKnown(kd, tag); n2cAgree++ }
    }
  }

  /* ---------- C -> node ---------- */
  const c2nBin = path.join(args.work, 'c2n.bin')
  const enc = runC(args.mqcDiff, ['encode', String(args.seed), String(args.count), c2nBin])
  const c2nRecs = readRecords(c2nBin)
  if (enc.length !== c2nRecs.length) {
    problems.push(`C->node: ${c2nRecs.length} records but ${enc.length} description lines`)
  }
  fs.writeFileSync(path.join(args.work, 'c2n.json'), JSON.stringify(enc, null, 1))
  let c2nAgree = 0; let c2nKnown = 0; let c2nFixed = 0
  for (let i = 0; i < Math.min(enc.length, c2nRecs.length); i++) {
    const e = enc[i]
    const rec = c2nRecs[i]
    if (e.fixed) c2nFixed++
    const tag = `C->node #${i} ${e.name} v${rec.v} [${rec.bytes.length > 64 ? rec.bytes.subarray(0, 64).toString('hex') + '...' : rec.bytes.toString('hex')}]`
    if (e.v !== rec.v) { problems.push(`${tag}: version mismatch`); continue }
    const res = mpParse(mp, rec.bytes, rec.v)
    const ours = canonFromC(e.pkt)
    if (res.err) {
      const kd = explainParseReject(e, ours, rec, res.err)
      if (kd) { noteKnown(kd, tag); c2nKnown++ } else problems.push(`${tag}: mqtt-packet rejects our encoding: ${res.err}`)
      continue
    }
    const theirs = canonFromMp(res.pkt, rec.v)
    const d = firstDiff(ours, theirs)
    if (d) {
      const kd = explainParsedDiff(e, ours, theirs)
      if (kd) { noteKnown(kd, tag); c2nKnown++ } else problems.push(`${tag}: field mismatch (ours vs mqtt-packet) ${d}`)
      continue
    }
    c2nAgree++
  }

  /* ---------- report ---------- */
  console.log(`mqtt-packet ${version}, seed ${args.seed}, ${args.count} random packets each way`)
  console.log(`node->C: ${cases.length} packets (${nFixed} fixed, ${cases.length - nFixed} random): ` +
    `${n2cAgree} agree (${n2cReencSame} re-encoded byte-identical), ${n2cKnown} known differences`)
  console.log(`C->node: ${c2nRecs.length} packets (${c2nFixed} fixed, ${c2nRecs.length - c2nFixed} random): ` +
    `${c2nAgree} agree, ${c2nKnown} known differences`)
  for (const [id, n] of [...kdSeen.entries()].sort()) {
    console.log(`  known difference ${id}: ${n}x (${known.get(id).summary})`)
  }
  if (problems.length) {
    console.log(`\n${problems.length} DISAGREEMENTS:`)
    for (const p of problems.slice(0, args.verbose ? problems.length : 60)) console.log('  ' + p)
    if (!args.verbose && problems.length > 60) console.log(`  ... ${problems.length - 60} more (--verbose)`)
    process.exitCode = 1
  } else {
    console.log('no unexplained disagreement')
  }
}

function reviveBuffers (k, v) {
  if (v && typeof v === 'object' && v.type === 'Buffer' && Array.isArray(v.data)) return Buffer.from(v.data)
  return v
}

/* A field difference in node->C that a listed known difference explains, or null. */
function explainFieldDiff (cs, ours) {
  return null
}

/* Our re-encoding differs from mqtt-packet's bytes: acceptable only for the MQTT 5 forms where
 * the spec lets the sender omit the Reason Code and/or the Property Length (KD-SHORT-FORM). */
function explainReencDiff (cs, reenc) {
  /* 3.1 DUP on PUBREL/SUBSCRIBE/UNSUBSCRIBE: accepted, not kept (the relay resends with its
   * own retry logic), so re-encoded without it; nothing else may differ (KD-31-DUP). */
  const b = cs.bytes
  if (cs.v === 3 && ['pubrel', 'subscribe', 'unsubscribe'].includes(cs.canon.type) &&
      (b[0] & 0x08) && reenc.length === b.length && reenc[0] === (b[0] & ~0x08) &&
      reenc.subarray(1).equals(b.subarray(1))) return 'KD-31-DUP'
  if (cs.v !== 5) return null
  const t = cs.canon.type
  const short = ['puback', 'pubrec', 'pubrel', 'pubcomp', 'disconnect', 'auth']
  if (!short.includes(t) || cs.canon.props.length) return null
  if (t === 'disconnect' || t === 'auth') {
    /* mqtt-packet: [hdr, 2, code, 0]; short: [hdr, 0] (code 0) or [hdr, 1, code] */
    if (b.length === 4 && b[1] === 2 && b[3] === 0) {
      const code = b[2]
      if (code === 0 && reenc.length === 2 && reenc[0] === b[0] && reenc[1] === 0) return 'KD-SHORT-FORM'
      if (reenc.length === 3 && reenc[0] === b[0] && reenc[1] === 1 && reenc[2] === code) return 'KD-SHORT-FORM'
    }
    return null
  }
  /* acks: mqtt-packet writes [hdr, 4, id, id, code, 0] for a non-zero code without properties,
   * the spec allows [hdr, 3, id, id, code] (3.4.2.1: no Property Length when RL < 4). */
  if (b.length === 6 && b[1] === 4 && b[5] === 0) {
    if (reenc.length === 5 && reenc[0] === b[0] && reenc[1] === 3 && reenc.subarray(2, 5).equals(b.subarray(2, 5))) return 'KD-SHORT-FORM'
  }
  return null
}

/* mqtt-packet rejects something we encoded: explained only by a listed known difference. */
function explainParseReject (e, ours, rec, err) {
  /* AUTH with Remaining Length 0 (3.15.2.1): mqtt-packet reads a missing reason code as
   * undefined and rejects it. */
  if (ours.type === 'auth' && rec.v === 5 && rec.bytes.length === 2 && rec.bytes[1] === 0 &&
      /Invalid auth reason code/.test(err)) return 'KD-MP-AUTH-SHORT'
  return null
}

/* mqtt-packet parsed what we encoded into different fields: known differences only. */
function explainParsedDiff (e, ours, theirs) {
  /* mqtt-packet's user property map overwrites instead of appending when the earlier value
   * of the same name is the empty string (its `if (result[name][key])` is falsy for ''). */
  const up = (ours.props || []).concat(ours.will ? ours.will.props : []).filter(p => p[0] === 0x26)
  const seen = new Map()
  let trigger = false
  for (const [, [k, v]] of up) {
    if (seen.has(k) && seen.get(k) === '') trigger = true
    seen.set(k, v)
  }
  if (trigger) {
    const lossy = (list) => {
      const m = new Map()
      const order = []
      for (const p of list) {
        if (p[0] !== 0x26) continue
        const [k, v] = p[1]
        if (!m.has(k)) { m.set(k, [v]); order.push(k); continue }
        const vals = m.get(k)
        if (vals.length === 1 && vals[0] === '') m.set(k, [v])
        else vals.push(v)
      }
      const out = list.filter(p => p[0] !== 0x26)
      for (const k of order) for (const v of m.get(k)) out.push([0x26, [k, v]])
      return sortProps(out)
    }
    const adj = JSON.parse(JSON.stringify(ours))
    if (adj.props) adj.props = lossy(adj.props)
    if (adj.will) adj.will.props = lossy(adj.will.props)
    if (!firstDiff(adj, theirs)) return 'KD-MP-USERPROP-EMPTY'
  }
  return null
}

try {
  main()
} catch (e) {
  console.error('diff.js: ' + (e.stack || e))
  process.exitCode = 2
}
