/*
 * The dashboard's page, script and style sheet (proxy/admin/dashboard/), compiled
 * into the binary so that it serves them without files to install: each as
 * bytes and a length (include/aigate/admin/dashboard.h, proxy/admin/dashboard.c).
 */
#define ASSET(name, file)                                                                          \
    .section .rodata;                                                                              \
    .globl name;                                                                                   \
    .type name, @object;                                                                           \
    .balign 16;                                                                                    \
name:                                                                                              \
    .incbin file;                                                                                  \
name##_end:                                                                                        \
    .size name, name##_end - name;                                                                 \
    .globl name##_len;                                                                             \
    .type name##_len, @object;                                                                     \
    .balign 8;                                                                                     \
name##_len:                                                                                        \
    .quad name##_end - name;                                                                       \
    .size name##_len, 8

ASSET(dash_index_html, "proxy/admin/dashboard/index.html")
ASSET(dash_js, "proxy/admin/dashboard/dash.js")
ASSET(dash_css, "proxy/admin/dashboard/dash.css")

    .section .note.GNU-stack, "", @progbits
