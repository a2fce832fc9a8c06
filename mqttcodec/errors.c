/*
 * Error descriptions, the MQTT 5 reason code (§2.4) a failed receive maps to, and packet type
 * names (§2.1.2).
 */
#include "internal.h"

const char *mqc_strerror(int err)
{
    switch (err) {
    case MQC_OK:
        return "success";
    case MQC_AGAIN:
        return "need more bytes";
    case MQC_EMALFORMED:
        return "malformed packet: a length overruns its container or a field is cut short";
    case MQC_EPROTOCOL:
        return "protocol error";
    case MQC_ETOOBIG:
        return "packet too large";
    case MQC_ENOSPC:
        return "output buffer too small";
    case MQC_EUTF8:
        return "ill-formed UTF-8 string";
    case MQC_EINVAL:
        return "value cannot be encoded";
    case MQC_EVARINT:
        return "variable byte integer longer than 4 bytes or not minimal";
    case MQC_EFLAGS:
        return "reserved flag bits not as required";
    case MQC_EQOS:
        return "invalid QoS (3, or DUP set on QoS 0)";
    case MQC_EPACKETID:
        return "packet identifier 0 where a non-zero one is required";
    case MQC_ETOPIC:
        return "invalid topic name";
    case MQC_EFILTER:
        return "invalid topic filter";
    case MQC_EPROPID:
        return "unknown property or property not allowed in this packet";
    case MQC_EPROPDUP:
        return "property appears more than once";
    case MQC_EPROPVAL:
        return "property value not allowed";
    case MQC_EREASON:
        return "reason code not allowed in this packet";
    case MQC_ETRAILING:
        return "bytes left over after the last field";
    case MQC_EV5ONLY:
        return "MQTT 5.0 content in a 3.1/3.1.1 packet";
    case MQC_EPROTONAME:
        return "unsupported protocol name or level";
    case MQC_ETYPE:
        return "reserved packet type 0";
    case MQC_EEMPTY:
        return "empty topic filter or reason code list";
    case MQC_EWILL:
        return "inconsistent will, user name or password flags";
    case MQC_ESUBOPTS:
        return "invalid subscription options";
    default:
        return "unknown error";
    }
}

uint8_t mqc_reason_code(int err)
{
    switch (err) {
    /* §4.13 / §1.5: the packet cannot be parsed as the spec lays it out: 0x81 Malformed
     * Packet. EFLAGS: reserved bits [MQTT-2.1.3-1], [MQTT-3.1.2-3]; EQOS [MQTT-3.3.1-4];
     * EPROPID: §2.2.2.2; EREASON, ETRAILING, ETYPE, EWILL, EV5ONLY: layout violations. */
    case MQC_EMALFORMED:
    case MQC_EUTF8:
    case MQC_EVARINT:
    case MQC_EFLAGS:
    case MQC_EQOS:
    case MQC_EPROPID:
    case MQC_EREASON:
    case MQC_ETRAILING:
    case MQC_ETYPE:
    case MQC_EWILL:
    case MQC_EV5ONLY:
        return 0x81;
    /* Well formed but forbidden: 0x82 Protocol Error (e.g. "It is a Protocol Error to include
     * the Receive Maximum value of 0", §3.1.2.11.3). */
    case MQC_EPROTOCOL:
    case MQC_EPACKETID:
    case MQC_EPROPDUP:
    case MQC_EPROPVAL:
    case MQC_EEMPTY:
    case MQC_ESUBOPTS:
        return 0x82;
    case MQC_ETOOBIG:
        return 0x95; /* Packet too large */
    case MQC_ETOPIC:
        return 0x90; /* Topic Name invalid */
    case MQC_EFILTER:
        return 0x8F; /* Topic Filter invalid */
    case MQC_EPROTONAME:
        return 0x84; /* Unsupported Protocol Version [MQTT-3.1.2-2] */
    default:
        return 0x80; /* Unspecified error */
    }
}

const char *mqc_type_name(int type)
{
    static const char *const names[16] = {
        "RESERVED", "CONNECT",  "CONNACK",    "PUBLISH", "PUBACK",      "PUBREC",
        "PUBREL",   "PUBCOMP",  "SUBSCRIBE",  "SUBACK",  "UNSUBSCRIBE", "UNSUBACK",
        "PINGREQ",  "PINGRESP", "DISCONNECT", "AUTH",
    };
    if (type < 0 || type > 15)
        return "RESERVED";
    return names[type];
}
