import CNATS
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The socket side of a connection made with `Options.batchedWrites`: libnats' external event loop interface,
/// served by one small thread of our own, so that one thread can publish many messages with one write.
///
/// With `sendAsap` libnats writes every publish at once: one `send` system call per message. A publisher that
/// has fallen behind (a burst queued up before it) pays that call for every message it catches up on; batched
/// writes let it publish what is queued and write it all at once (`NATSConnection.endWriteBatch`), while a
/// publisher that is keeping up still writes each message as soon as it has it — a batch of one.
///
/// With an event loop, libnats never writes on the publishing thread: a publish appends to the connection's
/// buffer and asks for a write (`write` ADD). Who writes:
/// - a thread inside a write batch (`begin`…`end`): nobody until its `end`, which writes the whole buffer, and
///   waits while the socket is full, as a blocking send does without an event loop;
/// - any other request (libnats' PINGs from its timer thread, a SUB, a publish outside a batch): this loop's
///   thread, woken through an eventfd; it also reads everything the server sends (PONGs, INFO, messages).
///
/// libnats calls `attach` after each (re)connection, `read`/`write` REMOVE when the connection breaks, and
/// `detach` after that and on close; it checks under its own lock that the socket is still attached before it
/// reads or writes, so this thread may look at a socket number that was just closed without harm.
final class SocketLoop: @unchecked Sendable {
    /// The connection's socket while attached, else -1.
    private let socket = Atomic<Int32>(-1)
    /// The `natsConnection*`, known from the first `attach` on.
    private let connection = Atomic<UInt>(0)
    private let reading = Atomic<Bool>(false)
    /// libnats has bytes buffered and asked for a write (ADD), not yet all written (REMOVE).
    let writePending = Atomic<Bool>(false)
    /// A write was asked for by a thread that is not in a write batch: this loop writes.
    private let loopWrites = Atomic<Bool>(false)
    /// The thread in a write batch (`pthread_self()`), 0 when none.
    private let batchThread = Atomic<UInt>(0)
    private let stopping = Atomic<Bool>(false)
    /// Serializes this adapter's calls of `natsConnection_ProcessWriteEvent` (`processWrite`).
    private let writeMutex: UnsafeMutablePointer<pthread_mutex_t> = {
        let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        m.initialize(to: pthread_mutex_t())
        pthread_mutex_init(m, nil)
        return m
    }()
    private let wake: Int32
    private var thread = pthread_t()

    /// Registers the callbacks on `opts` and starts the thread.
    init(installingOn opts: OpaquePointer?) throws(NATSError) {
        wake = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard wake >= 0 else {
            throw NATSError(status: Int32(NATS_SYS_ERROR.rawValue), operation: "eventfd", text: String(cString: strerror(errno)))
        }
        do {
            try install(on: opts)
        } catch {
            close(wake)
            throw error
        }
        let me = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            let loop = Unmanaged<SocketLoop>.fromOpaque(arg!).takeRetainedValue()
            loop.run()
            return nil
        }, me)
        guard rc == 0 else {
            Unmanaged<SocketLoop>.fromOpaque(me).release()
            close(wake)
            throw NATSError(status: Int32(NATS_SYS_ERROR.rawValue), operation: "pthread_create", text: String(cString: strerror(rc)))
        }
    }

    deinit {
        pthread_mutex_destroy(writeMutex)
        writeMutex.deallocate()
    }

    /// Writes what libnats has buffered, if it still has anything to write. libnats sends whatever its buffer
    /// holds, and a send of an empty buffer returns 0, which it takes for the server closing the connection: a
    /// loop thread woken for a write that `endBatch` had just made (or the other way round) ended the connection
    /// that way, a few times in ten runs of a busy publisher (NEXT.md, ninth session). Both callers go through
    /// here, one at a time, and look again at `writePending` (set and cleared under libnats' lock) first.
    private func processWrite(_ nc: OpaquePointer) {
        pthread_mutex_lock(writeMutex)
        defer { pthread_mutex_unlock(writeMutex) }
        guard writePending.load(ordering: .acquiring) else { return }
        natsConnection_ProcessWriteEvent(nc)
    }

    /// Ends the thread and waits for it; call before the connection is destroyed (it may be inside libnats).
    func stop() {
        stopping.store(true, ordering: .releasing)
        signal()
        pthread_join(thread, nil)
        close(wake)
    }

    private func install(on opts: OpaquePointer?) throws(NATSError) {
        let ctx = Unmanaged.passUnretained(self).toOpaque()
        try check(natsOptions_SetEventLoop(opts, ctx, { userData, loop, nc, fd in
            let me = Unmanaged<SocketLoop>.fromOpaque(loop!).takeUnretainedValue()
            userData?.pointee = loop
            me.connection.store(UInt(bitPattern: nc.map { Int(bitPattern: UnsafeRawPointer($0)) } ?? 0), ordering: .releasing)
            me.reading.store(true, ordering: .releasing)   // attaching starts reading (as libnats' own adapters do)
            me.socket.store(fd, ordering: .releasing)
            me.signal()
            return NATS_OK
        }, { userData, add in
            let me = Unmanaged<SocketLoop>.fromOpaque(userData!).takeUnretainedValue()
            me.reading.store(add, ordering: .releasing)
            me.signal()
            return NATS_OK
        }, { userData, add in
            // Called with the connection's lock held.
            let me = Unmanaged<SocketLoop>.fromOpaque(userData!).takeUnretainedValue()
            if add {
                me.writePending.store(true, ordering: .releasing)
                if me.batchThread.load(ordering: .relaxed) != UInt(pthread_self()) {
                    me.loopWrites.store(true, ordering: .releasing)
                    me.signal()
                }
            } else {
                me.writePending.store(false, ordering: .releasing)
                me.loopWrites.store(false, ordering: .releasing)
            }
            return NATS_OK
        }, { userData in
            let me = Unmanaged<SocketLoop>.fromOpaque(userData!).takeUnretainedValue()
            me.socket.store(-1, ordering: .releasing)
            me.reading.store(false, ordering: .releasing)
            me.signal()
            return NATS_OK
        }), "natsOptions_SetEventLoop")
    }

    /// This thread's publishes are buffered until `endBatch`.
    func beginBatch() { batchThread.store(UInt(pthread_self()), ordering: .relaxed) }

    /// Writes what the batch buffered; while the socket is full, waits for room (a dead server is noticed by
    /// libnats' pings, which detach the socket and end the wait).
    func endBatch(_ nc: OpaquePointer) {
        batchThread.store(0, ordering: .relaxed)
        guard writePending.load(ordering: .acquiring) else { return }
        processWrite(nc)
        while writePending.load(ordering: .acquiring) {
            let fd = socket.load(ordering: .acquiring)
            guard fd >= 0 else { return }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&p, 1, 100)
            processWrite(nc)
        }
    }

    private func signal() {
        var one: UInt64 = 1
        _ = write(wake, &one, 8)
    }

    private func run() {
        var fds = (pollfd(fd: wake, events: Int16(POLLIN), revents: 0), pollfd(fd: -1, events: 0, revents: 0))
        while !stopping.load(ordering: .acquiring) {
            let fd = socket.load(ordering: .acquiring)
            var events: Int16 = 0
            if reading.load(ordering: .acquiring) { events |= Int16(POLLIN) }
            if loopWrites.load(ordering: .acquiring) && writePending.load(ordering: .acquiring) { events |= Int16(POLLOUT) }
            // No events asked: leave the socket out (a hung-up socket would report POLLHUP at once, forever).
            fds.1 = pollfd(fd: fd >= 0 && events != 0 ? fd : -1, events: events, revents: 0)
            fds.0.revents = 0
            let n = withUnsafeMutablePointer(to: &fds) {
                $0.withMemoryRebound(to: pollfd.self, capacity: 2) { poll($0, 2, 1_000) }
            }
            guard n > 0 else { continue }
            if fds.0.revents != 0 {
                var count: UInt64 = 0
                _ = read(wake, &count, 8)
            }
            let revents = Int32(fds.1.revents)
            guard fds.1.fd >= 0, revents != 0, let nc = OpaquePointer(bitPattern: connection.load(ordering: .acquiring)) else { continue }
            if revents & (POLLIN | POLLHUP | POLLERR) != 0 && events & Int16(POLLIN) != 0 { natsConnection_ProcessReadEvent(nc) }
            if revents & (POLLOUT | POLLHUP | POLLERR) != 0 && events & Int16(POLLOUT) != 0 { processWrite(nc) }
        }
    }
}
