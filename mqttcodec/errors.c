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

const char *mqc_reason_name(uint8_t code)
{
    static const struct {
        uint8_t code;
        const char *name;
    } names[] = {
        {0x80, "unspecified error"},
        {0x81, "malformed packet"},
        {0x82, "protocol error"},
        {0x83, "implementation specific error"},
        {0x84, "unsupported protocol version"},
        {0x85, "client identifier not valid"},
        {0x86, "bad user name or password"},
        {0x87, "not authorized"},
        {0x88, "server unavailable"},
        {0x89, "server busy"},
        {0x8A, "banned"},
        {0x8B, "server shutting down"},
        {0x8C, "bad authentication method"},
        {0x8D, "keep alive timeout"},
        {0x8E, "session taken over"},
        {0x8F, "topic filter invalid"},
        {0x90, "topic name invalid"},
        {0x91, "packet identifier in use"},
        {0x92, "packet identifier not found"},
        {0x93, "receive maximum exceeded"},
        {0x94, "topic alias invalid"},
        {0x95, "packet too large"},
        {0x96, "message rate too high"},
        {0x97, "quota exceeded"},
        {0x98, "administrative action"},
        {0x99, "payload format invalid"},
        {0x9A, "retain not supported"},
        {0x9B, "QoS not supported"},
        {0x9C, "use another server"},
        {0x9D, "server moved"},
        {0x9E, "shared subscriptions not supported"},
        {0x9F, "connection rate exceeded"},
        {0xA0, "maximum connect time"},
        {0xA1, "subscription identifiers not supported"},
        {0xA2, "wildcard subscriptions not supported"},
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].code == code)
            return names[i].name;
    return NULL;
}
