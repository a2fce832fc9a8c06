# Relay module unit tests (test/unit/test_<module>.c), included from test/CMakeLists.txt when the
# relay is built. Each is one cmocka binary linked against the layer it tests and nothing above
# it (a call that runs up a layer fails to link), labelled `unit`.
find_package(PkgConfig REQUIRED)
pkg_check_modules(RELAY_CMOCKA REQUIRED IMPORTED_TARGET cmocka)

set(RELAY_UNIT_DIR ${CMAKE_CURRENT_LIST_DIR})

# relay_unit_test(name [extra sources...] LIBS layer libraries...): test/unit/<name>.c.
function(relay_unit_test name)
  cmake_parse_arguments(ARG "" "" "LIBS" ${ARGN})
  add_executable(${name} ${RELAY_UNIT_DIR}/${name}.c ${ARG_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} PkgConfig::RELAY_CMOCKA)
  target_compile_options(${name} PRIVATE ${RELAY_WARNINGS})
  target_compile_definitions(${name} PRIVATE _GNU_SOURCE
    RELAY_TEST_CONFIGS="${RELAY_UNIT_DIR}/configs")
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES LABELS unit)
endfunction()

relay_unit_test(test_config LIBS relay_conf)
relay_unit_test(test_config_links LIBS relay_conf)
relay_unit_test(test_template LIBS relay_route)
