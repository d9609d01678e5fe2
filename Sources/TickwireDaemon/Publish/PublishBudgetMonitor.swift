import CTickwireSys
import Synchronization
import TickwireCore
import TickwireZMQ
#if canImport(Glibc)
import Glibc
#endif

/// Keeps what libzmq holds for remote subscribers within `[publish] memory_budget_mb`, on its own thread
/// (`tw-pub-budget`): it learns who is connected from the PUB socket's monitor (accepted and disconnected, with
/// the descriptor), asks the kernel every `sampleNanos` whether each connection is pushed back (bytes the
/// peer's window does not admit, or a full send buffer; otherwise libzmq drains that queue), and cuts (resets
/// the TCP connection of) the longest-stalled subscribers while their queues could hold more than the budget.
/// The accounting is `SubscriberBudget`'s.
///
/// Why a descriptor may be shut down from here: libzmq owns it, but `shutdown(2)` only ends the connection
/// (libzmq sees the peer leave, frees its queue and closes the descriptor itself). The descriptor is cut only
/// while it still is the same connection — the publisher's port and the peer address recorded when it was
/// accepted — so a number reused by another file or connection is never touched. Subscribers on `ipc://` are
/// counted but never cut; `inproc://` ones are not seen at all.
final class PublishBudgetMonitor: @unchecked Sendable {
    /// What one queued message costs the daemon, for turning the budget in bytes into messages: two 64-byte
    /// `zmq_msg_t` per message in the peer's queue (subject and payload frames; subjects up to 33 bytes sit
    /// inside them) and the payload's 72 bytes in a 128-byte heap block, counted in full although subscribers
    /// share it. Measured: 120–150 bytes a message with 100 stalled subscribers (README.md, "Slow subscribers").
    static let bytesPerMessage = 256
    let sampleNanos: Int64 = 100_000_000

    let budgetBytes: Int
    private var state: SubscriberBudget
    private let pair: ZMQSocket
    private let publishedCount: @Sendable () -> UInt64
    private let log: @Sendable (String) -> Void
    /// The PUB socket's TCP port, set once it is bound (nil for ipc).
    var localPort: Int?
    private var identities: [Int32: String] = [:]
    private let finished = Atomic<Bool>(false)

    // Read by metrics.
    let subscribers = Atomic<Int>(0)
    let heldBoundMessages = Atomic<Int>(0)
    let stalled = Atomic<Int>(0)
    let cut = Atomic<UInt64>(0)
    let highWaterMark: Int

    /// Starts monitoring `socket` (call on the thread that owns it, before it is bound).
    /// - Parameters:
    ///   - mark: the socket's SNDHWM, the most messages one subscriber may have queued.
    ///   - published: at least the number of messages sent so far.
    init(socket: ZMQSocket, context: ZMQContext, budgetBytes: Int, mark: Int,
         published: @escaping @Sendable () -> UInt64, log: @escaping @Sendable (String) -> Void) throws(ZMQError) {
        self.budgetBytes = budgetBytes
        state = SubscriberBudget(budgetMessages: max(1, budgetBytes / Self.bytesPerMessage), mark: mark)
        highWaterMark = mark
        publishedCount = published
        self.log = log
        let endpoint = "inproc://tickwire-publish-monitor-\(UInt(bitPattern: ObjectIdentifier(socket).hashValue))"
        try socket.monitor(endpoint, events: [.accepted, .disconnected])
        pair = try context.socket(.pair)
        try pair.connect(endpoint)
    }

    /// Ends `run` once the publisher has stopped the socket's monitor (after which libzmq sends no more events,
    /// so nothing can block on this thread being gone).
    func finish() { finished.store(true, ordering: .releasing) }

    /// Reads events and samples until `finish`.
    func run() {
        // Ahead of the feed's threads: the queues grow with every 100 ms this thread waits for a core, for every
        // stalled subscriber (1,000 stalled ones passed the budget by 0.7 GB for seconds on a loaded machine).
        // Its work is small. Without CAP_SYS_NICE it stays at 0.
        _ = tw_set_thread_nice(-5)
        var lastSample: Int64 = 0
        while !finished.load(ordering: .acquiring) {
            do {
                _ = try pair.waitReadable(timeoutMs: 20)
                while let e = try ZMQMonitorEvent.receive(from: pair, dontWait: true) { handle(e) }
            } catch {
                if error.isTerminated { break }
                if !error.isInterrupted { log("publish budget: monitor: \(error)") }
            }
            let now = Nanos.now().rawValue
            if now - lastSample >= sampleNanos {
                sample(now: now)
                lastSample = now
            }
        }
        pair.close()
    }

    private func handle(_ e: ZMQMonitorEvent) {
        let fd = Int32(bitPattern: e.value)
        if e.kind == .accepted {
            let identity = Self.identity(fd)
            // Not a connection of our port: it closed before this event was read and the number went to
            // something else; its `disconnected` is queued behind.
            if localPort != nil, identity?.port != localPort { return }
            identities[fd] = identity?.peer
            state.join(fd, published: publishedCount(), cuttable: localPort != nil && identity != nil)
        } else if e.kind == .disconnected {
            identities.removeValue(forKey: fd)
            state.leave(fd)
        }
        subscribers.store(state.subscribers, ordering: .relaxed)
    }

    private func sample(now: Int64) {
        let published = publishedCount()
        for (fd, peer) in state.peers where !peer.cut {
            // Pushed back: bytes wait that the peer's TCP window does not admit (it does not read; this shows
            // the moment libzmq writes past the window, however busy libzmq's I/O thread is), or the kernel
            // takes no more bytes (the send buffer is full: the path is slower than the feed). Otherwise libzmq
            // is not held back by this peer and writes out what it queued for it. A broken connection is not
            // pushed back: libzmq is about to drop it and free its queue.
            var notsent: UInt32 = 0, unacked: UInt32 = 0
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard tw_socket_send_backlog(fd, &notsent, &unacked) == 0, poll(&p, 1, 0) >= 0, p.revents & Int16(POLLNVAL) == 0 else {
                forget(fd)   // closed, or no longer a socket: libzmq is done with it
                continue
            }
            let writable = p.revents & Int16(POLLOUT | POLLERR | POLLHUP) != 0
            state.observe(fd, pushedBack: notsent > 0 || !writable, now: now, published: published)
        }
        for fd in state.cutOverBudget(published: published) { cutConnection(fd) }
        subscribers.store(state.subscribers, ordering: .relaxed)
        stalled.store(state.stalled, ordering: .relaxed)
        heldBoundMessages.store(state.held(published: published), ordering: .relaxed)
    }

    private func cutConnection(_ fd: Int32) {
        guard let localPort, let peer = identities[fd] else { return }   // ipc: counted, never cut
        guard let now = Self.identity(fd), now.port == localPort, now.peer == peer else {
            forget(fd)   // already gone: its queue is freed
            return
        }
        // Abortive: libzmq's close then resets the connection, dropping what the kernel still holds for the peer
        // (a stalled peer would otherwise read it all, stale, before learning it was cut).
        var abort = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort, socklen_t(MemoryLayout<linger>.size))
        if shutdown(fd, Int32(SHUT_RDWR)) == 0 {
            cut.add(1, ordering: .relaxed)
            log("publish budget: cut stalled subscriber \(peer): the subscribers' queues could hold more than \(budgetBytes >> 20) MiB")
        }
    }

    /// Stops counting a connection that is gone without its disconnect having been seen (a later disconnect for
    /// the number is then a no-op, and an accept reusing it adds it afresh: events arrive in order).
    private func forget(_ fd: Int32) {
        identities.removeValue(forKey: fd)
        state.leave(fd)
    }

    private static func identity(_ fd: Int32) -> (port: Int, peer: String)? {
        var port: Int32 = 0
        var text = [CChar](repeating: 0, count: 80)
        guard tw_socket_endpoints(fd, &port, &text, text.count) == 0 else { return nil }
        return (Int(port), String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
}
