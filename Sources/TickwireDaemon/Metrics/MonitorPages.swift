import CTickwireSys
import Foundation
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket
import Synchronization
import TickwireCore
import TickwireRing

/// The monitor's open pages (WebSocket connections on `/ws`) and the thread that pushes each a snapshot about
/// once a second.
///
/// What one page can cost is bounded, whatever its browser does:
/// - Each page has a mailbox of one snapshot. A page still sending the previous snapshot when the next is ready
///   has the older one replaced (counted in `snapshotsDropped`), never queued; what a page holds is that one
///   snapshot, NIO's write buffer (stops taking writes at `writeBufferHighWater`) and the socket's send buffer
///   (`pageSendBufferBytes`).
/// - A page whose write has not completed for `stalledPageTimeout` (a tab that stopped reading) is closed.
/// - At most `maxPages` pages are open; a further upgrade is answered 400 and closed (`pagesRefused`), so
///   pages never take the connections `/metrics` scrapes need.
/// - Frames from the page larger than `maxInboundFrameBytes` close it (1009, by NIO's frame decoder); malformed
///   frames or reserved opcodes close it (1002). What a page sends is otherwise ignored: the page is read-only.
final class MonitorPages: Sendable {
    struct Limits: Sendable {
        var pushInterval: Duration = .seconds(1)
        var maxPages = 16
        var stalledPageTimeout: Duration = .seconds(10)
        var maxInboundFrameBytes = 4096
        var pageSendBufferBytes = 64 * 1024
        var writeBufferHighWater = 64 * 1024
        /// How long a closing page may take to answer the close frame before its connection is closed.
        var closeTimeout: Duration = .seconds(2)
    }

    /// One open page: its connection and its mailbox.
    private final class Page: Sendable {
        let channel: any Channel
        let mailbox: AsyncStream<ByteBuffer>
        let post: AsyncStream<ByteBuffer>.Continuation
        /// Monotonic nanoseconds at which the write in progress began; 0 while none is.
        let writeBegan = Atomic<Int64>(0)
        init(channel: any Channel) {
            self.channel = channel
            (mailbox, post) = AsyncStream.makeStream(of: ByteBuffer.self, bufferingPolicy: .bufferingNewest(1))
        }
    }

    private struct State {
        var reserved = 0
        var pages: [ObjectIdentifier: Page] = [:]
        var latest: ByteBuffer?
        var stopping = false
    }

    let limits: Limits
    private let state = Locked(State())
    private let wake = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private let started = Atomic<Bool>(false)
    private let feed: MonitorFeed
    private let logger: Logger
    let opened = Atomic<UInt64>(0)
    let refused = Atomic<UInt64>(0)
    let sent = Atomic<UInt64>(0)
    let dropped = Atomic<UInt64>(0)
    let closedStalled = Atomic<UInt64>(0)

    init(inputs: MonitorFeed.Inputs, limits: Limits = Limits(), logger: Logger = Logger(label: "tickwire.monitor")) {
        self.limits = limits
        self.logger = logger
        feed = MonitorFeed(inputs)
    }

    /// Starts the pusher thread. Idempotent.
    func start() {
        guard !started.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let t = Thread { [self] in
            _ = tw_set_thread_name("tw-monitor")
            run()
            finished.signal()
        }
        t.name = "monitor"
        t.start()
    }

    /// Stops pushing, closes every page, and joins the pusher thread. Safe to call twice.
    func stop() {
        let pages = state.withLock { s -> [Page] in
            s.stopping = true
            return Array(s.pages.values)
        }
        for p in pages {
            p.post.finish()
            p.channel.close(promise: nil)
        }
        if started.load(ordering: .acquiring) {
            wake.signal()
            _ = finished.wait(timeout: .now() + 5)
            finished.signal()   // a second stop returns at once
        }
    }

    /// The monitor's counters by name, as the snapshot's `monitor` section and `/metrics` show them.
    var counters: [String: UInt64] {
        [
            "pages_open": UInt64(state.withLock { $0.reserved }),
            "pages_opened": opened.load(ordering: .relaxed),
            "pages_refused": refused.load(ordering: .relaxed),
            "pages_closed_stalled": closedStalled.load(ordering: .relaxed),
            "snapshots_sent": sent.load(ordering: .relaxed),
            "snapshots_dropped": dropped.load(ordering: .relaxed),
        ]
    }

    /// Adds the monitor's counters to the daemon's statistics (so `/metrics` and `tickwire stats` show them).
    func addStatistics(to s: inout DaemonStatistics) {
        let c = counters
        s.gauges.append(("tickwire_monitor_pages", Double(c["pages_open"] ?? 0), "Monitor pages (WebSockets on /ws) open."))
        s.counters += [
            ("tickwire_monitor_pages_refused_total", ("", ""), c["pages_refused"] ?? 0, "Monitor pages refused: the page limit was reached."),
            ("tickwire_monitor_pages_closed_stalled_total", ("", ""), c["pages_closed_stalled"] ?? 0,
             "Monitor pages closed because they stopped reading their WebSocket."),
            ("tickwire_monitor_snapshots_sent_total", ("", ""), c["snapshots_sent"] ?? 0, "Snapshots written to monitor pages."),
            ("tickwire_monitor_snapshots_dropped_total", ("", ""), c["snapshots_dropped"] ?? 0,
             "Snapshots replaced by a newer one before a slow monitor page could take them."),
        ]
    }

    // MARK: - The WebSocket side (called by the metrics server)

    /// Decides an upgrade to `/ws` on the connection's event loop: a page slot is taken now and given back when
    /// the connection closes, however it closes.
    func upgrade(channel: any Channel) -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>> {
        let admitted = state.withLock { s in
            guard !s.stopping, s.reserved < limits.maxPages else { return false }
            s.reserved += 1
            return true
        }
        guard admitted else {
            refused.add(1, ordering: .relaxed)
            return .dontUpgrade
        }
        opened.add(1, ordering: .relaxed)
        channel.closeFuture.whenComplete { [self] _ in
            state.withLock { s in
                s.reserved -= 1
                _ = s.pages.removeValue(forKey: ObjectIdentifier(channel))
            }
        }
        // The kernel's share of what a page may hold, and NIO's: writes wait (and snapshots are replaced) beyond these.
        _ = channel.setOption(ChannelOptions.socketOption(.so_sndbuf), value: SocketOptionValue(limits.pageSendBufferBytes))
        _ = channel.setOption(ChannelOptions.writeBufferWaterMark,
                              value: .init(low: limits.writeBufferHighWater / 2, high: limits.writeBufferHighWater))
        return .upgrade([:]) { [self] inbound, outbound, _ in await serve(channel: channel, inbound: inbound, outbound: outbound) }
    }

    private func serve(channel: any Channel, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async {
        let page = Page(channel: channel)
        let first = state.withLock { s -> ByteBuffer?? in
            guard !s.stopping, channel.isActive else { return .none }
            s.pages[ObjectIdentifier(channel)] = page
            return .some(s.latest)
        }
        guard let first else { return }
        if let first { page.post.yield(first) }   // a new page shows something at once
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [self] in
                for await snapshot in page.mailbox {
                    page.writeBegan.store(max(1, tw_monotonic_ns()), ordering: .relaxed)
                    do {
                        try await outbound.write(.custom(WebSocketFrame(fin: true, opcode: .text, data: snapshot)))
                    } catch {
                        break
                    }
                    page.writeBegan.store(0, ordering: .relaxed)
                    sent.add(1, ordering: .relaxed)
                }
            }
            group.addTask {
                // Read-only: a page's messages are ignored. Iterating is what answers pings and close frames, and
                // what fails on a malformed frame.
                do { for try await _ in inbound {} } catch {}
            }
            _ = await group.next()
            page.post.finish()
            group.cancelAll()
        }
        state.withLock { _ = $0.pages.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    // MARK: - The pusher

    private func run() {
        let interval = Self.nanos(limits.pushInterval)
        let stall = Self.nanos(limits.stalledPageTimeout)
        let encoder = JSONEncoder()
        var nextAt = tw_monotonic_ns()
        while true {
            if state.withLock({ $0.stopping }) { return }
            let snapshot = feed.next(monitor: counters)
            let buffer: ByteBuffer
            do { buffer = ByteBuffer(data: try encoder.encode(snapshot)) } catch {
                logger.error("monitor snapshot could not be encoded: \(error)")
                buffer = ByteBuffer(string: #"{"type":"error","reason":"snapshot could not be encoded"}"#)
            }
            let pages = state.withLock { s -> [Page] in
                s.latest = buffer
                return Array(s.pages.values)
            }
            let now = tw_monotonic_ns()
            for page in pages {
                let began = page.writeBegan.load(ordering: .relaxed)
                if began != 0 && now - began > stall {
                    closedStalled.add(1, ordering: .relaxed)
                    logger.notice("monitor page \(page.channel.remoteAddress.map { "\($0)" } ?? "?") stopped reading; closed")
                    page.post.finish()
                    page.channel.close(promise: nil)
                    continue
                }
                if case .dropped = page.post.yield(buffer) { dropped.add(1, ordering: .relaxed) }
            }
            nextAt += interval
            let after = tw_monotonic_ns()
            // Fell behind (a loaded machine): the next one an interval from now, never two back to back to catch up.
            if nextAt <= after { nextAt = after + interval }
            _ = self.wake.wait(timeout: .now() + .nanoseconds(Int(nextAt - after)))
        }
    }

    private static func nanos(_ d: Duration) -> Int64 {
        d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000
    }
}
