/* utf8.c: UTF-8 Encoded String content, MQTT 5.0 §1.5.4 / MQTT 3.1.1 §1.5.3. */
#include "mqc_testutil.h"

#include <string.h>

struct utf8_case {
    const char *name;
    const char *hex;
    int want;
};

static const struct utf8_case cases[] = {
    /* well-formed */
    {"empty string", "", MQC_OK},
    {"ASCII", "61 2f 62", MQC_OK},
    {"U+0001 and U+007F (control characters are allowed)", "01 7f", MQC_OK},
    {"2-byte U+0080 (smallest)", "c2 80", MQC_OK},
    {"2-byte U+00A9", "c2 a9", MQC_OK},
    {"2-byte U+07FF (largest)", "df bf", MQC_OK},
    {"3-byte U+0800 (smallest)", "e0 a0 80", MQC_OK},
    {"3-byte U+20AC", "e2 82 ac", MQC_OK},
    {"3-byte U+D7FF (below the surrogates)", "ed 9f bf", MQC_OK},
    {"3-byte U+E000 (above the surrogates)", "ee 80 80", MQC_OK},
    {"[MQTT-1.5.4-3] U+FEFF BOM is a character like any other", "ef bb bf 61", MQC_OK},
    {"3-byte U+FFFF (non-character, allowed by the codec)", "ef bf bf", MQC_OK},
    {"4-byte U+10000 (smallest)", "f0 90 80 80", MQC_OK},
    {"4-byte U+1F600", "f0 9f 98 80", MQC_OK},
    {"4-byte U+10FFFF (largest)", "f4 8f bf bf", MQC_OK},
    /* 5.0 §1.5.4 / 3.1.1 §1.5.3 example: "A" U+2A6D4 */
    {"spec example A U+2A6D4 (Figure 1.1 / 1-1)", "41 f0 aa 9b 94", MQC_OK},
    {"mixed 1/2/3/4-byte", "61 c3 a9 e2 82 ac f0 9f 98 80 7a", MQC_OK},

    /* [MQTT-1.5.4-2] U+0000 */
    {"[MQTT-1.5.4-2] U+0000 alone", "00", MQC_EUTF8},
    {"[MQTT-1.5.4-2] U+0000 inside", "61 00 62", MQC_EUTF8},
    {"[MQTT-1.5.4-2] U+0000 at the end", "61 62 00", MQC_EUTF8},
    /* overlong forms [MQTT-1.5.4-1] (ill-formed per RFC 3629) */
    {"[MQTT-1.5.4-1] overlong 2-byte U+0000 (C0 80)", "c0 80", MQC_EUTF8},
    {"[MQTT-1.5.4-1] overlong 2-byte '/' (C0 AF)", "c0 af", MQC_EUTF8},
    {"[MQTT-1.5.4-1] overlong 2-byte U+007F (C1 BF)", "c1 bf", MQC_EUTF8},
    {"[MQTT-1.5.4-1] overlong 3-byte U+0000 (E0 80 80)", "e0 80 80", MQC_EUTF8},
    {"[MQTT-1.5.4-1] overlong 3-byte U+07FF (E0 9F BF)", "e0 9f bf", MQC_EUTF8},
    {"[MQTT-1.5.4-1] overlong 4-byte U+0000 (F0 80 80 80)", "f0 80 80 80", MQC_EUTF8},
    {"[MQTT-1.5.4-1] overlong 4-byte U+FFFF (F0 8F BF BF)", "f0 8f bf bf", MQC_EUTF8},
    /* surrogates [MQTT-1.5.4-1] */
    {"[MQTT-1.5.4-1] surrogate U+D800 (ED A0 80)", "ed a0 80", MQC_EUTF8},
    {"[MQTT-1.5.4-1] surrogate U+DBFF (ED AF BF)", "ed af bf", MQC_EUTF8},
    {"[MQTT-1.5.4-1] surrogate U+DC00 (ED B0 80)", "ed b0 80", MQC_EUTF8},
    {"[MQTT-1.5.4-1] surrogate U+DFFF (ED BF BF)", "ed bf bf", MQC_EUTF8},
    {"[MQTT-1.5.4-1] surrogate pair as CESU-8", "ed a0 bd ed b8 80", MQC_EUTF8},
    /* above U+10FFFF */
    {"[MQTT-1.5.4-1] U+110000 (F4 90 80 80)", "f4 90 80 80", MQC_EUTF8},
    {"[MQTT-1.5.4-1] lead F5", "f5 80 80 80", MQC_EUTF8},
    {"[MQTT-1.5.4-1] lead F7 BF BF BF", "f7 bf bf bf", MQC_EUTF8},
    {"[MQTT-1.5.4-1] 5-byte form F8", "f8 88 80 80 80", MQC_EUTF8},
    {"[MQTT-1.5.4-1] 6-byte form FC", "fc 84 80 80 80 80", MQC_EUTF8},
    {"[MQTT-1.5.4-1] byte FE", "fe", MQC_EUTF8},
    {"[MQTT-1.5.4-1] byte FF", "ff", MQC_EUTF8},
    /* truncated sequences */
    {"[MQTT-1.5.4-1] truncated 2-byte at the end", "61 c2", MQC_EUTF8},
    {"[MQTT-1.5.4-1] truncated 3-byte (1 of 3)", "e2", MQC_EUTF8},
    {"[MQTT-1.5.4-1] truncated 3-byte (2 of 3)", "e2 82", MQC_EUTF8},
    {"[MQTT-1.5.4-1] truncated 4-byte (3 of 4)", "f0 9f 98", MQC_EUTF8},
    {"[MQTT-1.5.4-1] truncated 3-byte followed by ASCII", "e2 82 61", MQC_EUTF8},
    {"[MQTT-1.5.4-1] 2-byte lead followed by ASCII", "c2 41", MQC_EUTF8},
    {"[MQTT-1.5.4-1] 4-byte lead followed by a 3-byte char", "f0 e2 82 ac", MQC_EUTF8},
    /* stray continuation bytes */
    {"[MQTT-1.5.4-1] stray continuation 80", "80", MQC_EUTF8},
    {"[MQTT-1.5.4-1] stray continuation BF after ASCII", "61 bf", MQC_EUTF8},
    {"[MQTT-1.5.4-1] extra continuation after a 2-byte char", "c2 a9 a9", MQC_EUTF8},
    {"[MQTT-1.5.4-1] continuation inside ASCII", "61 80 62", MQC_EUTF8},
};

static const char *case_name(const void *c)
{
    return ((const struct utf8_case *)c)->name;
}

/* Each string sits at the end of a page: the checker must not look past len. */
static void run_case(void **state)
{
    const struct utf8_case *c = *state;
    uint8_t in[32];
    size_t n = mqt_hex(c->hex, in, sizeof in);
    struct mqt_guard g = {0};
    const uint8_t *p = mqt_guard_put(&g, in, n);
    assert_err(mqc_utf8_check(p, n), c->want);
    mqt_guard_free(&g);
}

/* A valid multi-byte character cut anywhere by len is invalid: the checker does not read the
 * rest of the character from beyond len. */
static void cut_by_len(void **state)
{
    (void)state;
    static const uint8_t s[] = {0x41, 0xF0, 0xAA, 0x9B, 0x94, 0xE2, 0x82, 0xAC, 0xC2, 0xA9};
    static const int ok_at[] = {1, 0, 0, 0, 1, 0, 0, 1, 0, 1}; /* prefix length i+1 valid? */
    for (size_t i = 0; i < sizeof s; i++)
        assert_err(mqc_utf8_check(s, i + 1), ok_at[i] ? MQC_OK : MQC_EUTF8);
}

/* Every code point of the BMP and a sample of the others: valid exactly when it is not a
 * surrogate and not U+0000, checked against an independent encoder. */
static size_t enc(uint32_t cp, uint8_t *o)
{
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | cp >> 6);
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | cp >> 12);
        o[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | cp >> 18);
    o[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

static void code_point_sweep(void **state)
{
    (void)state;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp = cp < 0x10000 ? cp + 1 : cp + 97) {
        uint8_t b[4];
        size_t n = enc(cp, b);
        int want = (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF)) ? MQC_EUTF8 : MQC_OK;
        if (mqc_utf8_check(b, n) != want)
            fail_msg("U+%04X: got %d, expected %d", (unsigned)cp, mqc_utf8_check(b, n), want);
    }
    uint8_t last[4];
    assert_err(mqc_utf8_check(last, enc(0x10FFFF, last)), MQC_OK);
}

/* All 2-byte lead/continuation combinations: exactly C2..DF followed by 80..BF are valid. */
static void two_byte_table(void **state)
{
    (void)state;
    for (unsigned a = 0x80; a <= 0xFF; a++)
        for (unsigned b = 0; b <= 0xFF; b++) {
            uint8_t s[2] = {(uint8_t)a, (uint8_t)b};
            int want = (a >= 0xC2 && a <= 0xDF && b >= 0x80 && b <= 0xBF) ? MQC_OK : MQC_EUTF8;
            if (mqc_utf8_check(s, 2) != want)
                fail_msg("%02X %02X: got %d, expected %d", a, b, mqc_utf8_check(s, 2), want);
        }
}

/* A reference decoder for one sequence of exactly n bytes (Unicode Table 3-7 "Well-Formed
 * UTF-8 Byte Sequences"): valid exactly when it is one well-formed character other than
 * U+0000. */
static int reference(const uint8_t *s, size_t n)
{
    uint8_t a = s[0];
    if (n == 1)
        return a >= 0x01 && a <= 0x7F;
    if (n == 2)
        return a >= 0xC2 && a <= 0xDF && s[1] >= 0x80 && s[1] <= 0xBF;
    if (n == 3) {
        uint8_t lo = 0x80, hi = 0xBF;
        if (a == 0xE0)
            lo = 0xA0;
        else if (a == 0xED)
            hi = 0x9F;
        else if (a < 0xE1 || a > 0xEF)
            return 0;
        return s[1] >= lo && s[1] <= hi && s[2] >= 0x80 && s[2] <= 0xBF;
    }
    return 0;
}

/* Every 3-byte string: the checker agrees with the reference. A 3-byte string is also valid
 * when it is three ASCII characters, an ASCII + 2-byte pair, or a 2-byte pair + ASCII. */
static void three_byte_table(void **state)
{
    (void)state;
    for (unsigned x = 0; x < 0x1000000; x++) {
        uint8_t s[3] = {(uint8_t)(x >> 16), (uint8_t)(x >> 8), (uint8_t)x};
        int want =
            reference(s, 3) || (reference(s, 1) && reference(s + 1, 1) && reference(s + 2, 1)) ||
            (reference(s, 1) && reference(s + 1, 2)) || (reference(s, 2) && reference(s + 2, 1));
        int got = mqc_utf8_check(s, 3) == MQC_OK;
        if (got != want)
            fail_msg("%02X %02X %02X: got %d, expected %d", s[0], s[1], s[2], got, want);
    }
}

/* 4-byte sequences: every lead byte with every second byte (the byte whose range depends on
 * the lead), the last two bytes fixed valid or invalid. */
static void four_byte_table(void **state)
{
    (void)state;
    static const uint8_t tails[][2] = {{0x80, 0x80}, {0xBF, 0xBF}, {0x80, 0x7F}, {0xC0, 0x80}};
    for (unsigned a = 0xF0; a <= 0xFF; a++)
        for (unsigned b = 0; b <= 0xFF; b++)
            for (size_t t = 0; t < 4; t++) {
                uint8_t s[4] = {(uint8_t)a, (uint8_t)b, tails[t][0], tails[t][1]};
                uint8_t lo = a == 0xF0 ? 0x90 : 0x80, hi = a == 0xF4 ? 0x8F : 0xBF;
                int want = a <= 0xF4 && b >= lo && b <= hi && t < 2;
                int got = mqc_utf8_check(s, 4) == MQC_OK;
                if (got != want)
                    fail_msg("%02X %02X %02X %02X: got %d, expected %d", s[0], s[1], s[2], s[3],
                             got, want);
            }
}

/* [MQTT-1.5.4-2] U+0000 anywhere in strings of every length up to 40, including inside the
 * 8-byte blocks a fast path may take at once; and a non-ASCII byte at every position. */
static void nul_and_high_everywhere(void **state)
{
    (void)state;
    uint8_t s[40];
    for (size_t len = 1; len <= sizeof s; len++)
        for (size_t at = 0; at < len; at++) {
            memset(s, 'a', len);
            assert_err(mqc_utf8_check(s, len), MQC_OK);
            s[at] = 0x00;
            if (mqc_utf8_check(s, len) != MQC_EUTF8)
                fail_msg("U+0000 at %zu of %zu accepted", at, len);
            s[at] = 0x80; /* a stray continuation byte */
            if (mqc_utf8_check(s, len) != MQC_EUTF8)
                fail_msg("0x80 at %zu of %zu accepted", at, len);
            s[at] = 0xFF;
            if (mqc_utf8_check(s, len) != MQC_EUTF8)
                fail_msg("0xFF at %zu of %zu accepted", at, len);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cut_by_len),      cmocka_unit_test(code_point_sweep),
        cmocka_unit_test(two_byte_table),  cmocka_unit_test(three_byte_table),
        cmocka_unit_test(four_byte_table), cmocka_unit_test(nul_and_high_everywhere),
    };
    int failed =
        mqt_run_table("utf8 cases [MQTT-1.5.4-1/2/3]", cases, sizeof cases / sizeof cases[0],
                      sizeof cases[0], case_name, run_case);
    failed += cmocka_run_group_tests_name("utf8", tests, NULL, NULL);
    return failed;
}
