/* json.c: a JSON string literal (escaped, valid UTF-8 whatever the input) and an RFC 3339 time. */
#include <string.h>
#include <time.h>

#include "util/json.h"

/* Length of the valid UTF-8 sequence at s[0..n) (RFC 3629 table 3-7: no overlong forms, no
 * surrogates, nothing past U+10FFFF), or 0 when s does not start one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t len;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4;
    else
        return 0;
    if (len > n)
        return 0;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

void relay_json_string(FILE *f, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;

    fputc('"', f);
    while (p < end) {
        size_t len = utf8_len(p, (size_t)(end - p));

        if (len == 0) {
            fputs("\\ufffd", f);
            p++;
            continue;
        }
        if (len > 1) {
            /* U+2028 and U+2029 end a line in JavaScript source */
            if (len == 3 && p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9))
                fprintf(f, "\\u%04x", p[2] == 0xA8 ? 0x2028u : 0x2029u);
            else
                fwrite(p, 1, len, f);
            p += len;
            continue;
        }
        switch (*p) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        case '<':
        case '>':
        case '&':
            fprintf(f, "\\u%04x", (unsigned)*p);
            break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fprintf(f, "\\u%04x", (unsigned)*p);
            else
                fputc(*p, f);
        }
        p++;
    }
    fputc('"', f);
}

void relay_json_cstr(FILE *f, const char *s)
{
    if (s)
        relay_json_string(f, s, strlen(s));
    else
        fputs("null", f);
}

void relay_json_time(char *out, size_t cap, int64_t wall_ms)
{
    const int64_t max_ms = 253402300799999; /* 9999-12-31T23:59:59.999Z */
    struct tm tm;
    time_t sec;

    if (wall_ms < 0)
        wall_ms = 0;
    if (wall_ms > max_ms)
        wall_ms = max_ms;
    sec = (time_t)(wall_ms / 1000);
    gmtime_r(&sec, &tm);
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(wall_ms % 1000));
}
