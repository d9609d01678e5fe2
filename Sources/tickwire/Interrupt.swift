import Foundation
import Synchronization

/// Raised by SIGINT/SIGTERM in the interactive commands; loops check it between waits.
let interrupted = Atomic<Bool>(false)

func installInterruptHandler() {
    var action = sigaction()
    action.__sigaction_handler.sa_handler = { _ in interrupted.store(true, ordering: .relaxed) }
    sigemptyset(&action.sa_mask)
    action.sa_flags = 0   // no SA_RESTART: a blocking zmq_poll returns EINTR at once
    sigaction(SIGINT, &action, nil)
    sigaction(SIGTERM, &action, nil)
}
