#ifndef TICKWIRE_CZEROMQ_SHIM_H
#define TICKWIRE_CZEROMQ_SHIM_H
#include <zmq.h>

// zmq_setsockopt/getsockopt take void*; these typed helpers keep Swift call sites honest.
static inline int tw_zmq_setsockopt_int(void *socket, int option, int value) {
    return zmq_setsockopt(socket, option, &value, sizeof value);
}
static inline int tw_zmq_getsockopt_int(void *socket, int option, int *value) {
    size_t size = sizeof *value;
    return zmq_getsockopt(socket, option, value, &size);
}
#endif
