/*
 * The cheapest HTTP server the benchmark harness compares against: epoll, non-blocking
 * sockets, one fixed reply per request, nothing else. It is three things in the harness:
 *
 *   - the "limit" row of the throughput scenario: what the kernel's socket path costs when the
 *     server itself costs next to nothing;
 *   - one process per tenant (`--port P`): the process-per-tenant design, one of these per port;
 *   - one thread per tenant (`--threads N --port P`): one process, thread i serving port P+i
 *     with its own epoll instance.
 *
 *   responder --port P [--threads N] [--id I] [--body TEXT]
 *
 * The reply body is "tenant I\n" (each thread answers with its own I, which is --id plus its
 * index), or TEXT with --body. A request for the path /ws first writes the tenant's own 64 KiB
 * working set (memset, so every cache line of it is touched), the same work the JavaScript
 * tenants do with Uint8Array.prototype.fill: what cache and TLB refill cost shows there.
 *
 * It understands exactly what the harness's client sends: GET requests without a body,
 * pipelined or not. A connection that sends more than 8 KiB without a complete head, or whose
 * reply does not fit the socket buffer at once, is closed: this is a benchmark peer, not a web
 * server. It serves only 127.0.0.0/8 or addresses inside the harness's own network namespace
 * (--addr, default 127.0.0.1).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define WORKING_SET_BYTES 65536
#define HEAD_BYTES_MAX 8192
#define EVENTS_MAX 64

struct tenant {
  int port;
  long id;
  const char *addr;
  const char *body;
  char reply[512];
  size_t reply_len;
  unsigned char *working_set;
  unsigned counter;
};

struct conn {
  int fd;
  size_t used;
  char head[HEAD_BYTES_MAX];
};

static void die(const char *what) {
  perror(what);
  exit(1);
}

static int listen_on(const char *addr, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
    fprintf(stderr, "responder: bad --addr %s\n", addr);
    exit(2);
  }
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
  if (listen(fd, 4096) < 0) die("listen");
  return fd;
}

/* Answers every complete request in the connection's buffer; returns -1 to close it. */
static int answer(struct tenant *t, struct conn *c) {
  for (;;) {
    char *end = memmem(c->head, c->used, "\r\n\r\n", 4);
    if (end == NULL) return c->used == HEAD_BYTES_MAX ? -1 : 0;
    size_t len = (size_t)(end - c->head) + 4;
    /* "GET /ws " or "GET /ws?" : the working-set variant. */
    if (c->used >= 8 && memcmp(c->head, "GET /ws", 7) == 0 && (c->head[7] == ' ' || c->head[7] == '?')) {
      memset(t->working_set, (int)(t->counter++ & 0xff), WORKING_SET_BYTES);
    }
    ssize_t sent = send(c->fd, t->reply, t->reply_len, MSG_NOSIGNAL);
    if (sent != (ssize_t)t->reply_len) return -1;
    memmove(c->head, c->head + len, c->used - len);
    c->used -= len;
  }
}

static void *serve(void *arg) {
  struct tenant *t = arg;
  t->working_set = calloc(1, WORKING_SET_BYTES);
  if (t->working_set == NULL) die("calloc");
  size_t body_len = strlen(t->body);
  int n = snprintf(t->reply, sizeof t->reply,
                   "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %zu\r\n\r\n%s", body_len, t->body);
  if (n <= 0 || (size_t)n >= sizeof t->reply) {
    fprintf(stderr, "responder: reply too long\n");
    exit(2);
  }
  t->reply_len = (size_t)n;
  int listener = listen_on(t->addr, t->port);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev) < 0) die("epoll_ctl");
  struct epoll_event events[EVENTS_MAX];
  for (;;) {
    int ready = epoll_wait(ep, events, EVENTS_MAX, -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < ready; i++) {
      struct conn *c = events[i].data.ptr;
      if (c == NULL) {
        for (;;) {
          int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct conn *nc = malloc(sizeof *nc);
          if (nc == NULL) {
            close(fd);
            continue;
          }
          nc->fd = fd;
          nc->used = 0;
          struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = nc};
          if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) < 0) {
            close(fd);
            free(nc);
          }
        }
        continue;
      }
      int closing = 0;
      for (;;) {
        ssize_t got = recv(c->fd, c->head + c->used, HEAD_BYTES_MAX - c->used, 0);
        if (got > 0) {
          c->used += (size_t)got;
          if (answer(t, c) < 0) {
            closing = 1;
            break;
          }
          continue;
        }
        if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) closing = 1;
        break;
      }
      if (closing) {
        close(c->fd); /* closing removes it from the epoll set */
        free(c);
      }
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  int port = 0;
  long threads = 0, id = 0;
  const char *addr = "127.0.0.1";
  const char *body = NULL;
  for (int i = 1; i < argc; i++) {
    if (i + 1 < argc && strcmp(argv[i], "--port") == 0) port = atoi(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "--threads") == 0) threads = atol(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "--id") == 0) id = atol(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "--addr") == 0) addr = argv[++i];
    else if (i + 1 < argc && strcmp(argv[i], "--body") == 0) body = argv[++i];
    else {
      fprintf(stderr, "usage: responder --port P [--threads N] [--id I] [--addr A] [--body TEXT]\n");
      return 2;
    }
  }
  if (port <= 0 || port > 65535 || threads < 0 || port + threads > 65536) {
    fprintf(stderr, "responder: --port must be 1-65535 and fit --threads ports\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  long count = threads > 0 ? threads : 1;
  struct tenant *tenants = calloc((size_t)count, sizeof *tenants);
  char (*bodies)[64] = calloc((size_t)count, 64);
  if (tenants == NULL || bodies == NULL) die("calloc");
  for (long i = 0; i < count; i++) {
    snprintf(bodies[i], 64, "tenant %ld\n", id + i);
    tenants[i] = (struct tenant){.port = port + (int)i, .id = id + i, .addr = addr, .body = body ? body : bodies[i]};
  }
  if (threads == 0) {
    serve(&tenants[0]);
    return 0;
  }
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  /* A tenant thread needs little stack; 64 KiB keeps 10,000 of them within reason. */
  pthread_attr_setstacksize(&attr, 64 * 1024);
  for (long i = 0; i < threads; i++) {
    pthread_t thread;
    if (pthread_create(&thread, &attr, serve, &tenants[i]) != 0) die("pthread_create");
  }
  pause();
  return 0;
}
