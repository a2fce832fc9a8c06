# Unit tests of the relay core (session, window, forwarding), included from test/CMakeLists.txt
# after relay_tests.cmake, whose relay_unit_test() they use.
relay_unit_test(test_session)
relay_unit_test(test_window)
relay_unit_test(test_relay ${CMAKE_CURRENT_LIST_DIR}/fake_io.c)
relay_unit_test(test_mosquitto)
relay_unit_test(test_spool)
relay_unit_test(test_tree)
