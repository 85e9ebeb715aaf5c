/*
 * The one main() of the Check suites.  Each tests/unit/test_NAME.c exports
 * Suite *NAME_suite(void); the Makefile links this file with it, naming the
 * constructor in UNIT_SUITE.  Tests run in fork mode (a crash or a leak
 * fails only its test) unless CK_FORK=no is set for a debugger; Check reads
 * CK_TIMEOUT_MULTIPLIER (sanitizer builds are slower) and CK_VERBOSITY
 * itself.  Exit status 0 when every test passed, 1 otherwise.
 */
#include <check.h>
#include <stdlib.h>

#ifndef UNIT_SUITE
#error "UNIT_SUITE must name the suite constructor, e.g. -DUNIT_SUITE=gate_suite"
#endif

Suite *UNIT_SUITE(void);

int
main(void)
{
    SRunner *sr = srunner_create(UNIT_SUITE());
    int failed;

    if (!getenv("CK_FORK"))
        srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
