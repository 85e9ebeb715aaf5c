/*
 * WebSocket frames as a peer writes them (RFC 6455 5.2), for the ws and
 * wsrelay suites: an encoder of their own, so the proxy's parser is not
 * tested against itself.
 */
#ifndef AIGATE_TEST_WSFRAME_H
#define AIGATE_TEST_WSFRAME_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FIN 0x80
#define RSV1 0x40
#define OP_CONT 0x0
#define OP_TEXT 0x1
#define OP_BIN 0x2
#define OP_CLOSE 0x8
#define OP_PING 0x9
#define OP_PONG 0xa

/*
 * Write into out (room for 14 + n bytes) a frame: b0 is FIN|RSV|opcode; the
 * payload masked with key unless key is NULL; the length in the shortest
 * encoding unless wide (then 16 or 64 bits).  Returns the frame's length.
 */
static inline size_t
wsframe(unsigned char *out, unsigned b0, const unsigned char *key, int wide, const void *payload,
        size_t n)
{
    size_t hl = 2;

    out[0] = (unsigned char)b0;
    if (n < 126 && !wide) {
        out[1] = (unsigned char)n;
    } else if (n < 65536 && wide != 64) {
        out[1] = 126;
        out[2] = (unsigned char)(n >> 8);
        out[3] = (unsigned char)n;
        hl = 4;
    } else {
        out[1] = 127;
        for (int k = 0; k < 8; k++)
            out[2 + k] = (unsigned char)((uint64_t)n >> (56 - 8 * k));
        hl = 10;
    }
    if (key) {
        out[1] |= 0x80;
        memcpy(out + hl, key, 4);
        hl += 4;
    }
    for (size_t k = 0; k < n; k++)
        out[hl + k] = ((const unsigned char *)payload)[k] ^ (key ? key[k & 3] : 0);
    return hl + n;
}

#endif
