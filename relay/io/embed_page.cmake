# cmake -DIN=.../status.html -DOUT=.../io_status_page.c -P embed_page.cmake
#
# The status page into C (GET / serves it from the binary; no xxd needed): the bytes of IN as
# io_status_page[] and io_status_page_len, and io_status_page_csp, the Content-Security-Policy
# header it is served with: the policy of the page's own <meta http-equiv> (which pins its
# script by hash: test/integration/status_mock.py --fix-csp) plus frame-ancestors 'none', which
# a <meta> cannot carry. OUT is only rewritten when it changes.
file(READ "${IN}" hex HEX)
file(READ "${IN}" text)
string(LENGTH "${hex}" nhex)
math(EXPR len "${nhex} / 2")
# 16 bytes (32 hex digits) a line, then each byte as 0xNN,
string(REPEAT "[0-9a-f]" 32 line_re)
string(REGEX REPLACE "(${line_re})" "\\1\n" hex "${hex}")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX MATCH "http-equiv=\"Content-Security-Policy\" content=\"([^\"]*)\"" found "${text}")
if(NOT found)
  message(FATAL_ERROR "${IN}: no <meta http-equiv=\"Content-Security-Policy\" content=\"...\">")
endif()
set(csp "${CMAKE_MATCH_1}; frame-ancestors 'none'")
string(REPLACE "\\" "\\\\" csp "${csp}")
string(REPLACE "\"" "\\\"" csp "${csp}")
file(WRITE "${OUT}.tmp"
"/* Generated from relay/io/status.html by relay/io/embed_page.cmake at build time. */
#include <stddef.h>

extern const unsigned char io_status_page[];
extern const size_t io_status_page_len;
extern const char io_status_page_csp[];

const unsigned char io_status_page[] = {
${bytes}
};
const size_t io_status_page_len = ${len};
const char io_status_page_csp[] = \"${csp}\";
")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUT}.tmp" "${OUT}")
file(REMOVE "${OUT}.tmp")
