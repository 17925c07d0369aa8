/* A libcurl multi "hub": many HTTP requests driven by one epoll fd, a timeout and a step
 * that blocks only as long as asked. No Lua here: write callbacks append to C buffers that
 * the bindings drain once a request is done. */
#ifndef TR_HUB_H
#define TR_HUB_H

#include <stddef.h>

#include "buf.h"

typedef struct tr_hub tr_hub;
typedef struct tr_request tr_request;

typedef struct tr_request_opts {
    const char *url;
    const char *method; /* NULL: GET */
    const char *body;   /* request body for POST, may be NULL */
    size_t body_len;
    const char *const *headers; /* "Name: value" lines */
    size_t n_headers;
    long timeout_ms;         /* whole request, 0 = none */
    long connect_timeout_ms; /* 0 = libcurl's default */
    const char *ca_file;     /* NULL: the system's CA store */
    size_t max_body;         /* larger bodies fail the request; 0 = no limit (with pause_at:
                                bytes held, not taken, at once) */
    size_t pause_at;         /* streaming: pause the transfer while this many bytes wait to be taken
                                (taking half of them resumes it); 0 = never pause */
    long idle_timeout_s;     /* fail when no byte arrived for this many seconds; 0 = no limit */
    int fresh_connect;       /* a new connection, never a reused one: libcurl sends a request
                                again by itself when a reused connection closes without an
                                answer, which a request that must not run twice cannot have */
} tr_request_opts;

/* Returns NULL when libcurl or epoll cannot be set up; err (if not NULL) says why. */
tr_hub *tr_hub_new(char *err, size_t err_len);
/* Detaches any request still running (they complete with an error) and frees the hub. */
void tr_hub_free(tr_hub *h);

/* The fd to watch for readability: ready whenever step() has work to do. */
int tr_hub_fd(const tr_hub *h);
/* Milliseconds until step() must run even if the fd stays quiet; -1 when nothing is timed. */
long tr_hub_timeout_ms(const tr_hub *h);
/* Wait at most wait_ms (0: not at all, negative: until something happens) for I/O, then
 * perform it. libcurl's timers that bring no request anything do not end the wait.
 * Returns 0, or -1 when epoll itself failed. */
int tr_hub_step(tr_hub *h, long wait_ms);
/* How often tr_hub_step ran (the host's wake-ups) and how many of those brought no request a
 * byte, a head or an end: a busy wait shows as idle steps by the thousand. */
void tr_hub_counts(const tr_hub *h, unsigned long *steps, unsigned long *idle_steps);
int tr_hub_active(const tr_hub *h);

/* Start a request. Returns NULL on bad options or failure; err says why. */
tr_request *tr_request_start(tr_hub *h, const tr_request_opts *o, char *err, size_t err_len);
/* Abort if still running (its connection is closed) and free everything it owns. */
void tr_request_free(tr_request *r);

int tr_request_done(const tr_request *r);
/* After done: 0 and the HTTP status, or a non-zero libcurl code and a message. */
int tr_request_result(const tr_request *r, long *status, const char **message);
/* The body bytes received and not taken yet: a pointer to them, their count in *len. */
const char *tr_request_body(const tr_request *r, size_t *len);
/* Streaming: 1 once the final response's header section is complete (its status in *status),
 * so the body can be read as it comes; 0 before. */
int tr_request_head(const tr_request *r, long *status);
/* Streaming: the first n of the bytes tr_request_body gives are taken (read them first); once
 * no more than half of pause_at is held, resume a transfer paused there. Never blocks and
 * never calls into Lua; the write callback may run inside it (libcurl delivers what it held
 * back). */
void tr_request_took(tr_request *r, size_t n);
/* Response headers as consecutive "name\0value\0" pairs, names in lower case. */
const tr_buf *tr_request_headers(const tr_request *r);

#endif
