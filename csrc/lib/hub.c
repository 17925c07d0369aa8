#define _POSIX_C_SOURCE 200809L
#include "hub.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

struct tr_hub {
    CURLM *multi;
    int epfd;
    int has_deadline;
    struct timespec deadline;
    tr_request *requests; /* running or finished, not yet freed: the hub only links them */
    int active;
    unsigned long progress;   /* bytes, heads and ends that reached requests (tr_hub_step) */
    unsigned long steps;      /* tr_hub_step calls: the host's wake-ups */
    unsigned long idle_steps; /* of those, the ones that brought no request anything */
};

struct tr_request {
    tr_hub *hub; /* NULL once the hub is gone */
    tr_request *prev, *next;
    CURL *easy;
    struct curl_slist *header_list;
    tr_buf body;
    size_t taken; /* body bytes already taken (tr_request_took): the first of body.data */
    tr_buf headers;
    size_t max_body;
    size_t pause_at;
    int paused;    /* the write callback returned CURL_WRITEFUNC_PAUSE */
    int head_done; /* the final response's header section is complete */
    long head_status;
    int done;
    int too_large;
    int attached; /* the easy handle is inside the multi */
    CURLcode code;
    long status;
    char errbuf[CURL_ERROR_SIZE];
    char message[CURL_ERROR_SIZE + 64];
};

static void set_err(char *err, size_t len, const char *msg) {
    if (err != NULL && len > 0) snprintf(err, len, "%s", msg);
}

static struct timespec now_mono(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t;
}

/* Milliseconds until t, rounded up: a wait that long never ends before t. */
static long ms_until(const struct timespec *t) {
    struct timespec n = now_mono();
    long long ns =
        (long long)(t->tv_sec - n.tv_sec) * 1000000000LL + (long long)(t->tv_nsec - n.tv_nsec);
    if (ns <= 0) return 0;
    return (long)((ns + 999999LL) / 1000000LL);
}

/* The monotonic time ms milliseconds from now. */
static struct timespec ms_from_now(long ms) {
    struct timespec t = now_mono();
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static int passed(const struct timespec *t) {
    struct timespec n = now_mono();
    return n.tv_sec > t->tv_sec || (n.tv_sec == t->tv_sec && n.tv_nsec >= t->tv_nsec);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
    (void)easy;
    tr_hub *h = userp;
    if (what == CURL_POLL_REMOVE) {
        if (socketp != NULL) epoll_ctl(h->epfd, EPOLL_CTL_DEL, fd, NULL);
        curl_multi_assign(h->multi, fd, NULL);
        return 0;
    }
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.data.fd = fd;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) ev.events |= EPOLLIN;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) ev.events |= EPOLLOUT;
    if (socketp == NULL) {
        if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, fd, &ev) != 0 && errno == EEXIST)
            epoll_ctl(h->epfd, EPOLL_CTL_MOD, fd, &ev);
        curl_multi_assign(h->multi, fd, h); /* any non-NULL marks "registered" */
    } else {
        epoll_ctl(h->epfd, EPOLL_CTL_MOD, fd, &ev);
    }
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
    (void)multi;
    tr_hub *h = userp;
    if (timeout_ms < 0) {
        h->has_deadline = 0;
        return 0;
    }
    h->deadline = ms_from_now(timeout_ms);
    h->has_deadline = 1;
    return 0;
}

tr_hub *tr_hub_new(char *err, size_t err_len) {
    tr_hub *h = calloc(1, sizeof *h);
    if (h == NULL) {
        set_err(err, err_len, "out of memory");
        return NULL;
    }
    h->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (h->epfd < 0) {
        set_err(err, err_len, strerror(errno));
        free(h);
        return NULL;
    }
    h->multi = curl_multi_init();
    if (h->multi == NULL) {
        set_err(err, err_len, "curl_multi_init failed");
        close(h->epfd);
        free(h);
        return NULL;
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    return h;
}

static void detach(tr_hub *h, tr_request *r) {
    if (r->attached) {
        curl_multi_remove_handle(h->multi, r->easy);
        r->attached = 0;
        h->active--;
    }
}

static void unlink_request(tr_hub *h, tr_request *r) {
    if (r->prev)
        r->prev->next = r->next;
    else
        h->requests = r->next;
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

void tr_hub_free(tr_hub *h) {
    if (h == NULL) return;
    while (h->requests != NULL) {
        tr_request *r = h->requests;
        detach(h, r);
        if (!r->done) {
            r->done = 1;
            r->code = CURLE_ABORTED_BY_CALLBACK;
            snprintf(r->message, sizeof r->message, "the connection hub was closed");
        }
        unlink_request(h, r);
        r->hub = NULL;
    }
    curl_multi_cleanup(h->multi);
    close(h->epfd);
    free(h);
}

int tr_hub_fd(const tr_hub *h) { return h->epfd; }

long tr_hub_timeout_ms(const tr_hub *h) { return h->has_deadline ? ms_until(&h->deadline) : -1; }

int tr_hub_active(const tr_hub *h) { return h->active; }

static void finish(tr_request *r, CURLcode code) {
    if (r->hub != NULL) r->hub->progress++;
    r->done = 1;
    r->code = code;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
    if (code == CURLE_OK) return;
    if (r->too_large)
        snprintf(r->message, sizeof r->message, "response body larger than the %zu-byte limit",
                 r->max_body);
    else if (r->errbuf[0] != '\0')
        snprintf(r->message, sizeof r->message, "%s", r->errbuf);
    else
        snprintf(r->message, sizeof r->message, "%s", curl_easy_strerror(code));
}

static void collect_finished(tr_hub *h) {
    int left;
    CURLMsg *m;
    while ((m = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) continue;
        tr_request *r = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (r == NULL) continue;
        CURLcode code = m->data.result;
        finish(r, code);
        detach(h, r); /* a finished connection goes back to libcurl's cache for reuse */
    }
}

/* One wait and what it brought; *woken: a socket had an event, or a signal came (the host's
 * Ctrl-C must reach Lua). */
static int step_once(tr_hub *h, long wait_ms, int *woken) {
    struct epoll_event evs[64];
    int running = 0;
    if (h->has_deadline) {
        long t = ms_until(&h->deadline);
        if (wait_ms < 0 || t < wait_ms) wait_ms = t;
    }
    if (wait_ms > 0x7fffffffL) wait_ms = 0x7fffffffL;
    int n = epoll_wait(h->epfd, evs, 64, (int)wait_ms);
    if (n < 0) {
        if (errno != EINTR) return -1;
        n = 0;
        *woken = 1;
    }
    if (n > 0) *woken = 1;
    for (int i = 0; i < n; i++) {
        int flags = 0;
        if (evs[i].events & EPOLLIN) flags |= CURL_CSELECT_IN;
        if (evs[i].events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
        if (evs[i].events & (EPOLLERR | EPOLLHUP)) flags |= CURL_CSELECT_ERR;
        curl_multi_socket_action(h->multi, evs[i].data.fd, flags, &running);
    }
    if (h->has_deadline && passed(&h->deadline)) {
        h->has_deadline = 0; /* the callback sets the next one */
        curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        /* libcurl skips the callback when its next expiry is the one it reported last (our
         * deadline can be up to 1 ms early: it rounds the time left down). Ask, so that timer
         * is not lost. */
        long left;
        if (!h->has_deadline && curl_multi_timeout(h->multi, &left) == CURLM_OK && left >= 0)
            on_timer(h->multi, left, h);
    }
    collect_finished(h);
    return 0;
}

int tr_hub_step(tr_hub *h, long wait_ms) {
    if (wait_ms < 0) wait_ms = -1; /* until something happens */
    struct timespec end = ms_from_now(wait_ms > 0 ? wait_ms : 0);
    /* A pass that was only libcurl's own timers, with nothing for any request, does not end
     * the wait: every transfer keeps its connect timeout after connecting, so 1,000 idle
     * long-polls woke the host some 45 times in 10 s, and a host that polls each subscription
     * when woken paid 1,000 polls each time. */
    unsigned long before = h->progress;
    h->steps++;
    int rc = 0;
    for (;;) {
        int woken = 0;
        if (step_once(h, wait_ms, &woken) != 0) {
            rc = -1;
            break;
        }
        if (woken || h->progress != before || wait_ms == 0) break;
        if (wait_ms > 0) {
            wait_ms = ms_until(&end);
            if (wait_ms == 0) break;
        }
    }
    if (h->progress == before) h->idle_steps++;
    return rc;
}

void tr_hub_counts(const tr_hub *h, unsigned long *steps, unsigned long *idle_steps) {
    *steps = h->steps;
    *idle_steps = h->idle_steps;
}

static size_t on_body(char *p, size_t size, size_t n, void *userp) {
    tr_request *r = userp;
    size_t len = size * n;
    if (r->hub != NULL) r->hub->progress++;
    size_t held = r->body.len - r->taken;
    if (r->pause_at && held >= r->pause_at) {
        r->paused = 1; /* libcurl keeps these bytes and offers them again once resumed */
        return CURL_WRITEFUNC_PAUSE;
    }
    if (r->max_body && held + len > r->max_body) {
        r->too_large = 1;
        return 0;
    }
    if (r->taken > 0 && r->body.cap - r->body.len <= len) { /* no room: drop what is taken */
        memmove(r->body.data, r->body.data + r->taken, held);
        r->body.len = held;
        r->taken = 0;
    }
    return tr_buf_add(&r->body, p, len) == 0 ? len : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *userp) {
    tr_request *r = userp;
    size_t len = size * n;
    if (r->hub != NULL) r->hub->progress++;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        tr_buf_reset(&r->headers); /* a new response (after 1xx): forget the last one's */
        r->head_done = 0;
        r->head_status = 0;
        size_t i = 5;
        while (i < len && p[i] != ' ')
            i++;
        if (i + 3 < len) {
            long st = 0;
            for (size_t k = i + 1; k < i + 4 && p[k] >= '0' && p[k] <= '9'; k++)
                st = st * 10 + (p[k] - '0');
            r->head_status = st;
        }
        return len;
    }
    if ((len == 2 && p[0] == '\r' && p[1] == '\n') || (len == 1 && p[0] == '\n')) {
        if (r->head_status >= 200) r->head_done = 1; /* the end of a final response's head */
        return len;
    }
    /* Headers are stored NUL-separated: a NUL inside one would split it (libcurl 7.88 refuses
     * them already; do not depend on that). */
    if (memchr(p, '\0', len) != NULL) return 0;
    size_t colon = 0;
    while (colon < len && p[colon] != ':')
        colon++;
    if (colon == 0 || colon == len) return len; /* blank line or not a header */
    size_t v = colon + 1, end = len;
    while (v < end && (p[v] == ' ' || p[v] == '\t'))
        v++;
    while (end > v && (p[end - 1] == '\r' || p[end - 1] == '\n' || p[end - 1] == ' '))
        end--;
    for (size_t i = 0; i < colon; i++) {
        char c = p[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (tr_buf_addc(&r->headers, c) != 0) return 0;
    }
    if (tr_buf_addc(&r->headers, '\0') != 0 || tr_buf_add(&r->headers, p + v, end - v) != 0 ||
        tr_buf_addc(&r->headers, '\0') != 0)
        return 0;
    return len;
}

static int configure(tr_request *r, const tr_request_opts *o) {
    CURL *e = r->easy;
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, o->url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, r) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, r) != CURLE_OK;
    /* Redirects are refused, not followed: the Authorization header must never reach
     * another host. */
    bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK;
    if (o->timeout_ms > 0) bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms) != 0;
    if (o->idle_timeout_s > 0) {
        bad |= curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, o->idle_timeout_s) != CURLE_OK;
    }
    if (o->connect_timeout_ms > 0)
        bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms) != 0;
    if (o->ca_file != NULL) bad |= curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file) != CURLE_OK;
    if (o->fresh_connect) bad |= curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L) != CURLE_OK;
    /* PUT (a packet upload) sends its body as POST does (with Content-Length, never chunked),
     * under its own method name. */
    int put = o->method != NULL && strcmp(o->method, "PUT") == 0;
    if (o->method != NULL && (put || strcmp(o->method, "POST") == 0)) {
        bad |= curl_easy_setopt(e, CURLOPT_POST, 1L) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len) != 0;
        bad |= curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, o->body ? o->body : "") != CURLE_OK;
        if (put) bad |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT") != CURLE_OK;
    } else if (o->method != NULL && strcmp(o->method, "GET") != 0) {
        return -1;
    }
    for (size_t i = 0; i < o->n_headers; i++) {
        struct curl_slist *l = curl_slist_append(r->header_list, o->headers[i]);
        if (l == NULL) return -1;
        r->header_list = l;
    }
    if (r->header_list) bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->header_list) != 0;
    return bad ? -1 : 0;
}

tr_request *tr_request_start(tr_hub *h, const tr_request_opts *o, char *err, size_t err_len) {
    if (o->url == NULL) {
        set_err(err, err_len, "no URL");
        return NULL;
    }
    tr_request *r = calloc(1, sizeof *r);
    if (r == NULL) {
        set_err(err, err_len, "out of memory");
        return NULL;
    }
    tr_buf_init(&r->body);
    r->taken = 0;
    tr_buf_init(&r->headers);
    r->max_body = o->max_body;
    r->pause_at = o->pause_at;
    r->easy = curl_easy_init();
    if (r->easy == NULL || configure(r, o) != 0) {
        set_err(err, err_len, "could not set up the request (bad URL, method or options)");
        tr_request_free(r);
        return NULL;
    }
    CURLMcode mc = curl_multi_add_handle(h->multi, r->easy);
    if (mc != CURLM_OK) {
        set_err(err, err_len, curl_multi_strerror(mc));
        tr_request_free(r);
        return NULL;
    }
    r->hub = h;
    r->attached = 1;
    h->active++;
    r->next = h->requests;
    if (h->requests) h->requests->prev = r;
    h->requests = r;
    return r;
}

void tr_request_free(tr_request *r) {
    if (r == NULL) return;
    if (r->hub != NULL) {
        detach(r->hub, r);
        unlink_request(r->hub, r);
    }
    if (r->easy) curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->header_list);
    tr_buf_free(&r->body);
    tr_buf_free(&r->headers);
    free(r);
}

int tr_request_done(const tr_request *r) { return r->done; }

int tr_request_result(const tr_request *r, long *status, const char **message) {
    *status = r->status;
    *message = r->code == CURLE_OK ? NULL : r->message;
    return (int)r->code;
}

const char *tr_request_body(const tr_request *r, size_t *len) {
    *len = r->body.len - r->taken;
    return r->body.data ? r->body.data + r->taken : "";
}

int tr_request_head(const tr_request *r, long *status) {
    if (status) *status = r->head_status;
    return r->head_done;
}

void tr_request_took(tr_request *r, size_t n) {
    size_t held = r->body.len - r->taken;
    r->taken += n < held ? n : held;
    held = r->body.len - r->taken;
    if (held == 0) {
        tr_buf_reset(&r->body);
        r->taken = 0;
    }
    /* A paused transfer goes on once half of what paused it is taken: the network keeps
     * moving while a reader takes the rest piece by piece. */
    if (r->paused && !r->done && r->attached && held <= r->pause_at / 2) {
        r->paused = 0;
        curl_easy_pause(r->easy, CURLPAUSE_CONT);
    }
}
const tr_buf *tr_request_headers(const tr_request *r) { return &r->headers; }
