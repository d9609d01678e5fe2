#ifndef TICKWIRE_CNATS_SHIM_H
#define TICKWIRE_CNATS_SHIM_H
#include <nats/nats.h>
// The batched-writes socket thread is woken through an eventfd (Glibc's module map leaves it out).
#include <sys/eventfd.h>

// nats_CheckCompatibility() is a function-like macro, which Swift does not import.
static inline bool tw_nats_check_compatibility(void) {
    return nats_CheckCompatibilityImpl(NATS_VERSION_REQUIRED_NUMBER, NATS_VERSION_NUMBER, NATS_VERSION_STRING);
}
#endif
