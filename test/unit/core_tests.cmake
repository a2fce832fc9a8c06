# Unit tests of the relay's layers below io (session, window, the core over an in-memory
# transport, the spool, the route tree, read batching), included from test/CMakeLists.txt after
# relay_tests.cmake, whose relay_unit_test() they use.
relay_unit_test(test_session LIBS relay_session)
relay_unit_test(test_window LIBS relay_session)
relay_unit_test(test_rate LIBS relay_session)
relay_unit_test(test_relay ${CMAKE_CURRENT_LIST_DIR}/fake_io.c LIBS relay_core relay_conf)
relay_unit_test(test_mosquitto LIBS relay_conf)
relay_unit_test(test_spool LIBS relay_store)
relay_unit_test(test_tree LIBS relay_route)
relay_unit_test(test_batch LIBS relay_core)
relay_unit_test(test_rtt LIBS relay_session)
# issue 17: the status API and POST /-/reload (core), the log's formats and ring (util)
relay_unit_test(test_status ${CMAKE_CURRENT_LIST_DIR}/fake_io.c ${CMAKE_CURRENT_LIST_DIR}/mini_json.c
                LIBS relay_core relay_conf)
relay_unit_test(test_log ${CMAKE_CURRENT_LIST_DIR}/mini_json.c LIBS relay_util)

# The core runs without the transport: test_relay and test_session link no libwebsockets
# symbol (STYLE.md §6: time and randomness come in as arguments, the io table is the seam).
find_program(RELAY_NM NAMES nm llvm-nm)
if(RELAY_NM)
  add_test(NAME layers.core_without_lws
           COMMAND ${CMAKE_COMMAND} -DNM=${RELAY_NM}
                   -DBINARIES=$<TARGET_FILE:test_relay>$<SEMICOLON>$<TARGET_FILE:test_session>$<SEMICOLON>$<TARGET_FILE:test_status>
                   -P ${CMAKE_CURRENT_LIST_DIR}/no_lws.cmake)
  set_tests_properties(layers.core_without_lws PROPERTIES LABELS unit)
endif()

# io/'s pure byte machines (issue 13): the proxy handshakes and the WebSocket client. They link
# the io layer (only proxy.o and ws.o are pulled from it, and OpenSSL's SHA-1 for ws).
relay_unit_test(test_proxy LIBS relay_io)
relay_unit_test(test_ws LIBS relay_io)
relay_unit_test(test_netstats ${CMAKE_CURRENT_LIST_DIR}/fake_io.c LIBS relay_core relay_conf)
