import Foundation
import Logging
import Testing
@testable import TickwireDaemon
import TickwireTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The live monitor (issue 19): the page at `/` of a real daemon in a real headless Chromium, its WebSocket
/// snapshots, and pages that misbehave. Real daemons, real sockets on 127.0.0.1; every wait is bounded.
@Suite(.serialized) struct MonitorTests {
    /// A config whose price-jump rule fires on any 1 bp move: the simulator's own trades raise alerts within seconds.
    static let jumpyAlerts = """
        [[alerts]]
        rule = "price_jump"
        subjects = "MD.*.*.TRADE"
        bps = 1
        window_ms = 1000
        """

    private func configFile(_ text: String) throws -> String {
        let path = temporaryDirectory("monitor-config") + "/tickwire.toml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test(.timeLimit(.minutes(5)))
    func thePageInChromiumMovesMatchesStatsAndShowsAnAlert() throws {
        let daemon = try DaemonProcess(["--config", configFile(Self.jumpyAlerts), "--rate", "2000"])
        let script = packageRoot + "/Tools/monitor_check.py"
        let screenshot = packageRoot + "/.build/artifacts/monitor/monitor.png"
        try? FileManager.default.removeItem(atPath: screenshot)
        let check = try ChildProcess("/usr/bin/env", ["python3", script, "--metrics", daemon.metrics, "--tickwire", tickwireBinary,
                                                      "--screenshot", screenshot, "--alert", "PRICE_JUMP", "--timeout", "60"])
        let status = check.wait(seconds: 240)
        if status == nil { check.signal(SIGKILL) }
        print("monitor_check.py:\n\(check.stdout)\(check.stderr)")
        #expect(status == 0, "Tools/monitor_check.py failed (Chromium, chromium-driver and selenium come from Tools/setup.sh):\n\(check.stdout)\n\(check.stderr)")
        #expect(FileManager.default.fileExists(atPath: screenshot), "no screenshot at \(screenshot)")
        print("monitor screenshot: \(screenshot)")
    }

    @Test(.timeLimit(.minutes(5)))
    func thePageIsSelfContainedAndMetricsIsUnchanged() throws {
        let daemon = try DaemonProcess(["--rate", "500"])
        let port = UInt16(daemon.metricsPort)
        let page = try httpRequest(port: port, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        #expect(page.status == 200)
        #expect(page.head.lowercased().contains("content-type: text/html; charset=utf-8"))
        #expect(page.body.contains("<title>Tickwire monitor</title>"))
        #expect(page.body.contains("/ws"))
        // Nothing fetched from elsewhere: no script, style, image or font from a URL.
        for external in ["src=\"http", "href=\"http", "url(http", "@import", "<script src", "<link rel=\"stylesheet\""] {
            #expect(!page.body.contains(external), "the page refers to something outside itself: \(external)")
        }
        let metrics = try httpRequest(port: port, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        #expect(metrics.status == 200)
        #expect(metrics.head.lowercased().contains("content-type: text/plain; version=0.0.4"))
        #expect(metrics.body.contains("tickwire_ring_published_total"))
        #expect(metrics.body.contains("tickwire_monitor_pages 0"))
    }

    @Test(.timeLimit(.minutes(5)))
    func aWebSocketGetsASnapshotAboutOnceASecondAndStaysOpen() throws {
        let daemon = try DaemonProcess(["--rate", "1000"])
        let ws = try RawWebSocket(port: UInt16(daemon.metricsPort))
        #expect(try ws.handshake() == 101)
        var snapshots: [[String: Any]] = []
        let start = Date()
        // Eight: the page must outlive the 5 s the server gives a connection to send its first request head.
        while snapshots.count < 8, Date().timeIntervalSince(start) < 40 {
            guard let frame = try ws.readFrame(seconds: 10) else { break }
            if frame.opcode == 1, let json = try JSONSerialization.jsonObject(with: Data(frame.payload)) as? [String: Any] {
                snapshots.append(json)
            }
        }
        try #require(snapshots.count == 8, "got \(snapshots.count) snapshots in 40 s")
        let elapsed = Date().timeIntervalSince(start)
        // The first comes at once (the latest), then one per second: 7 intervals; generous for a loaded machine.
        #expect(elapsed > 5, "8 snapshots in \(elapsed) s: faster than once a second")
        let first = snapshots[0], last = snapshots[7]
        #expect(first["type"] as? String == "snapshot")
        #expect(first["version"] as? Int == 1)
        #expect((last["peers"] as? [Any])?.isEmpty == true)
        let published = snapshots.map { (($0["ring"] as? [String: Any])?["published"] as? Int) ?? -1 }
        #expect(published[7] > published[0], "published did not move: \(published)")
        let sources = (last["sources"] as? [[String: Any]])?.compactMap { $0["name"] as? String } ?? []
        #expect(sources.contains("sim"), "\(sources)")
        let subscriptions = ((last["subscriptions"] as? [String: Any])?["shown"] as? [[String: Any]])?.compactMap { $0["name"] as? String } ?? []
        #expect(subscriptions.contains("zmq-publisher"), "\(subscriptions)")
        #expect((last["history"] as? [String: Any])?["publishedPerSecond"] as? [Double] != nil)
        for key in ["trades", "risk", "alerts", "store", "monitor", "publish", "uptimeSeconds", "intervalSeconds"] {
            #expect(last[key] != nil, "no \(key) in the snapshot")
        }
    }

    @Test(.timeLimit(.minutes(5)))
    func monitorFalseLeavesOnlyMetrics() throws {
        let daemon = try DaemonProcess(["--config", configFile("[metrics]\nmonitor = false\n")])
        let port = UInt16(daemon.metricsPort)
        #expect(try httpRequest(port: port, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").status == 404)
        let ws = try RawWebSocket(port: port)
        #expect(try ws.handshake() == 400)
        #expect(try httpRequest(port: port, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").status == 200)
        // A typo in the key is named, as for every key.
        let bad = try DaemonProcess.tickwire(["run", "--config", configFile("[metrics]\nmonitor = \"yes\"\n")], seconds: 20)
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("metrics.monitor") && bad.stderr.contains("expected true or false"), "\(bad.stderr)")
    }

    /// A page that stops reading: its snapshots are replaced, not queued, and after `stalledPageTimeout` it is
    /// closed; a page beside it that reads gets every snapshot meanwhile. The pages' server runs in-process with a
    /// fast push (every 20 ms) and small buffers, so the stalled page's buffers fill in a second instead of hours;
    /// its snapshots are a real in-process daemon's.
    @Test(.timeLimit(.minutes(5)))
    func aPageThatStopsReadingIsClosedAndTheOthersKeepGettingSnapshots() throws {
        let daemon = inProcessDaemon("monitor-stall") { $0.simRate = 2000; $0.metricsMonitor = false }
        try daemon.start()
        defer { daemon.shutdown() }
        var limits = MonitorPages.Limits()
        limits.pushInterval = .milliseconds(20)
        limits.stalledPageTimeout = .seconds(2)
        limits.pageSendBufferBytes = 4096
        limits.writeBufferHighWater = 8192
        let pages = MonitorPages(inputs: .init(statistics: { daemon.statistics() }), limits: limits)
        let server = try MetricsServer(endpoint: "127.0.0.1:0", monitor: pages) { _ in nil }
        pages.start()
        defer { server.stop() }

        let stalled = try RawWebSocket(port: server.port, receiveBuffer: 4096)
        #expect(try stalled.handshake() == 101)
        let reader = try RawWebSocket(port: server.port)
        #expect(try reader.handshake() == 101)
        // Read on the healthy page, never on the stalled one, until the server closes the stalled one.
        var received = 0, closedAfter: Double?
        let start = Date()
        while Date().timeIntervalSince(start) < 30 {
            if let f = try reader.readFrame(seconds: 5), f.opcode == 1 { received += 1 }
            if pages.closedStalled.load(ordering: .relaxed) > 0 { closedAfter = Date().timeIntervalSince(start); break }
        }
        let dropped = pages.dropped.load(ordering: .relaxed)
        #expect(closedAfter != nil, "the page that stopped reading was never closed (dropped \(dropped))")
        #expect(dropped > 0, "no snapshot was dropped for the page that stopped reading")
        #expect(received > 20, "the healthy page got only \(received) snapshots meanwhile")
        // The stalled page's socket now ends (after what was buffered for it), and the healthy page goes on.
        #expect(stalled.drainUntilClosed(seconds: 10), "the stalled page's connection is still open")
        var after = 0
        for _ in 0..<10 where (try reader.readFrame(seconds: 5))?.opcode == 1 { after += 1 }
        #expect(after == 10)
        print("stalled page closed after \(closedAfter ?? -1) s; \(dropped) snapshots dropped; \(received) delivered to the reader")
    }

    @Test(.timeLimit(.minutes(5)))
    func garbageAndOversizedFramesCloseOnlyTheirPage() throws {
        let daemon = try DaemonProcess(["--rate", "500"])
        let port = UInt16(daemon.metricsPort)
        let healthy = try RawWebSocket(port: port)
        #expect(try healthy.handshake() == 101)

        // A 10 MB frame: refused on its header (1009, message too big) without the server reading the payload.
        let big = try RawWebSocket(port: port)
        #expect(try big.handshake() == 101)
        let payload = [UInt8](repeating: 0x61, count: 10 << 20)
        big.sendFrame(opcode: 1, payload: payload)
        #expect(big.closeCode(seconds: 15) == 1009, "a 10 MB frame did not close its page with 1009")

        // Seeded garbage after the handshake: closed (by a close frame with a protocol error, or a reset).
        var rng = SplitMix(seed: 0x7157_3019)
        print("garbage seed 0x71573019")
        let garbage = try RawWebSocket(port: port)
        #expect(try garbage.handshake() == 101)
        garbage.sendRaw((0..<4096).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        #expect(garbage.drainUntilClosed(seconds: 20), "a page sending garbage was not closed")

        // A reserved opcode (3) in an otherwise well-formed, masked frame: closed with 1002.
        let reserved = try RawWebSocket(port: port)
        #expect(try reserved.handshake() == 101)
        reserved.sendFrame(opcode: 3, payload: Array("hello".utf8))
        #expect(reserved.closeCode(seconds: 15) == 1002)

        // A small text message is ignored (the page is read-only); the page stays open and keeps its snapshots.
        let chatty = try RawWebSocket(port: port)
        #expect(try chatty.handshake() == 101)
        chatty.sendFrame(opcode: 1, payload: Array("{\"please\":\"change something\"}".utf8))
        var chattyGot = 0
        for _ in 0..<3 where (try chatty.readFrame(seconds: 10))?.opcode == 1 { chattyGot += 1 }
        #expect(chattyGot == 3)

        // Throughout, the healthy page kept getting snapshots, and /metrics answers.
        var healthyGot = 0
        for _ in 0..<3 where (try healthy.readFrame(seconds: 10))?.opcode == 1 { healthyGot += 1 }
        #expect(healthyGot == 3)
        #expect(try httpRequest(port: port, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").status == 200)
        #expect(daemon.child.isRunning)
    }

    @Test(.timeLimit(.minutes(5)))
    func twoHundredPagesAreCappedAndTheDaemonGoesOn() throws {
        let daemon = try DaemonProcess(["--rate", "500"])
        let port = UInt16(daemon.metricsPort)
        let maxPages = MonitorPages.Limits().maxPages
        // 200 upgrade requests sent before any answer is read.
        let sockets = try (0..<200).map { _ in
            let ws = try RawWebSocket(port: port)
            ws.sendHandshake()
            return ws
        }
        var upgraded: [RawWebSocket] = [], refused = 0, unanswered = 0
        for ws in sockets {
            switch try ws.readHandshakeStatus(seconds: 30) {
            case 101: upgraded.append(ws)
            case 400: refused += 1; ws.close()
            default: unanswered += 1
            }
        }
        #expect(upgraded.count == maxPages, "\(upgraded.count) pages opened; the cap is \(maxPages)")
        #expect(refused == 200 - maxPages, "\(refused) refused, \(unanswered) unanswered")
        // With the cap reached, scrapes and stats are answered and the open pages get their snapshots.
        let metrics = try httpRequest(port: port, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        #expect(metrics.status == 200)
        #expect(metrics.body.contains("tickwire_monitor_pages \(maxPages)"))
        #expect(metrics.body.contains("tickwire_monitor_pages_refused_total \(200 - maxPages)"))
        let stats = try DaemonProcess.tickwire(["stats", "--metrics", daemon.metrics], seconds: 20)
        #expect(stats.status == 0, "\(stats.stderr)")
        var got = 0
        for ws in upgraded.prefix(4) where (try ws.readFrame(seconds: 10))?.opcode == 1 { got += 1 }
        #expect(got == 4)
        // Closing the pages gives their places back.
        for ws in upgraded { ws.close() }
        let deadline = Date().addingTimeInterval(15)
        var open = -1
        while Date() < deadline {
            let m = try httpRequest(port: port, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").body
            open = StatsTable.parse(m).first { $0.name == "tickwire_monitor_pages" }.map { Int($0.value) } ?? -1
            if open == 0 { break }
            usleep(200_000)
        }
        #expect(open == 0, "\(open) pages still counted open after all closed")
        let again = try RawWebSocket(port: port)
        #expect(try again.handshake() == 101)
        // And the daemon stops cleanly with a page open.
        daemon.child.signal(SIGTERM)
        #expect(daemon.child.wait(seconds: 15) == 0)
        #expect(daemon.child.stderr.contains("tickwire stopped"))
    }
}

/// The snapshot's numbers without sockets: what the monitor computes from the daemon's statistics.
@Suite struct MonitorFeedTests {
    /// A finished simulator (a limit, no alert rules) leaves every counter still: the snapshot and `/metrics` must
    /// then agree exactly, field by field, and the rates be zero.
    @Test(.timeLimit(.minutes(5)))
    func aSnapshotOfAStillDaemonEqualsWhatMetricsShows() throws {
        let daemon = inProcessDaemon("monitor-feed") { c in
            c.simRate = 0; c.simLimit = 3000; c.alertEntries = []; c.metricsMonitor = false
        }
        try daemon.start()
        defer { daemon.shutdown() }
        var published: UInt64 = 0, stillSince = Date()
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let now = daemon.statistics().published
            if now != published { published = now; stillSince = Date() }
            if published > 0 && Date().timeIntervalSince(stillSince) > 1.5 { break }
            usleep(100_000)
        }
        let feed = MonitorFeed(.init(statistics: { daemon.statistics() }))
        _ = feed.next()
        usleep(200_000)
        let m = feed.next()
        let samples = StatsTable.parse(daemon.metrics.render(daemon.statistics()))
        func metric(_ name: String, _ labels: [String: String] = [:]) -> Double? {
            samples.first { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }?.value
        }
        #expect(m.ring.published == published && published > 0)
        #expect(Double(m.ring.published) == metric("tickwire_ring_published_total"))
        #expect(Double(m.ring.capacity) == metric("tickwire_ring_capacity"))
        #expect(Double(m.ring.subjects) == metric("tickwire_subjects"))
        #expect(m.ring.publishedPerSecond == 0 && m.intervalSeconds > 0)
        let sim = try #require(m.sources.first { $0.name == "sim" })
        #expect(sim.eventsPerSecond == 0)
        for (counter, value) in sim.counters {
            #expect(Double(value) == metric("tickwire_source_total", ["source": "sim", "counter": counter]), "sim \(counter)")
        }
        #expect(m.subscriptions.total == m.subscriptions.shown.count)
        for sub in m.subscriptions.shown {
            #expect(Double(sub.delivered) == metric("tickwire_subscription_delivered_total", ["subscription": sub.name]), "\(sub.name)")
            #expect(Double(sub.dropped) == metric("tickwire_subscription_dropped_total", ["subscription": sub.name]), "\(sub.name)")
            #expect(Double(sub.lag) == metric("tickwire_subscription_lag", ["subscription": sub.name]), "\(sub.name)")
        }
        for (outcome, value) in m.trades.outcomes {
            #expect(Double(value) == metric("tickwire_trades_total", ["outcome": outcome]))
        }
        #expect(m.alerts.firedByRule.values.allSatisfy { $0 == 0 } && m.alerts.latest.isEmpty)
        #expect(m.peers.isEmpty)
        #expect(m.history.uptimeSeconds.count == 1)
    }

    /// Percentiles of an interval: the difference of two cumulative bucket counts, interpolated within a bucket.
    @Test func intervalPercentilesComeFromTheBucketsThatGrew() {
        let bounds = (0..<LatencyHistogram.bucketCount).map { Double(UInt64(1) << UInt64($0)) / 1e9 }
        func cumulative(_ perBucket: [Int: UInt64]) -> [UInt64] {
            var total: UInt64 = 0
            return bounds.indices.map { i in total += perBucket[i] ?? 0; return total }
        }
        // Before: 1000 samples in [1, 2) µs (bucket 11). This interval: 100 more in [512, 1024) ns (bucket 10).
        let before = cumulative([11: 1000])
        let now = cumulative([11: 1000, 10: 100])
        let l = MonitorFeed.intervalLatency(bounds: bounds, cumulative: now, before: before, sumSeconds: 0.0011, count: 1100)
        #expect(l.samples == 100)
        #expect(abs((l.p50Seconds ?? 0) - 768e-9) < 1e-12)          // halfway through 512…1024 ns
        #expect(abs((l.p99Seconds ?? 0) - (512e-9 + 0.99 * 512e-9)) < 1e-12)
        #expect(abs((l.meanSeconds ?? 0) - 1e-6) < 1e-12)
        // An interval with nothing new has no percentiles.
        let quiet = MonitorFeed.intervalLatency(bounds: bounds, cumulative: now, before: now, sumSeconds: 0.0011, count: 1100)
        #expect(quiet.samples == 0 && quiet.p50Seconds == nil && quiet.p99Seconds == nil)
        // 99 fast samples and 1 slow one: p50 among the fast, p99 at the top of theirs, not in the slow one's bucket.
        let mixed = MonitorFeed.intervalLatency(bounds: bounds, cumulative: cumulative([10: 99, 20: 1]), before: nil, sumSeconds: 0, count: 100)
        #expect((mixed.p50Seconds ?? 1) < 1024e-9 && (mixed.p99Seconds ?? 1) <= 1024e-9)
    }
}

// MARK: - A WebSocket client on a raw TCP socket, so the tests can misbehave as a browser never would.

private struct SocketError: Error, CustomStringConvertible { let description: String }

private final class RawWebSocket {
    let fd: Int32
    private var buffered: [UInt8] = []

    /// - Parameter receiveBuffer: SO_RCVBUF, set before connecting (a small one makes a non-reading page fill up fast).
    init(port: UInt16, receiveBuffer: Int? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SocketError(description: "socket: \(errno)") }
        if var size = receiveBuffer.map(Int32.init) {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else {
            let e = errno
            Glibc.close(fd)
            throw SocketError(description: "connect to \(port): \(String(cString: strerror(e)))")
        }
    }

    deinit { Glibc.close(fd) }

    func close() { shutdown(fd, Int32(SHUT_RDWR)) }

    func sendRaw(_ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }   // closed by the server (or the 5 s send timeout): what the caller checks next
            sent += n
        }
    }

    func sendHandshake(path: String = "/ws") {
        sendRaw(Array(("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").utf8))
    }

    /// The status of the handshake's answer (0 if none came); the bytes after its head stay buffered.
    func readHandshakeStatus(seconds: Double) throws -> Int {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            if let end = headEnd() {
                let head = String(decoding: buffered[..<end], as: UTF8.self)
                buffered.removeFirst(end)
                return head.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
            }
            guard Date() < deadline, fill(until: deadline) else { return 0 }
        }
    }

    func handshake(path: String = "/ws") throws -> Int {
        sendHandshake(path: path)
        return try readHandshakeStatus(seconds: 15)
    }

    /// A client frame (masked, as RFC 6455 requires of clients).
    func sendFrame(opcode: UInt8, payload: [UInt8], fin: Bool = true) {
        var frame: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        let n = payload.count
        if n < 126 { frame.append(0x80 | UInt8(n)) }
        else if n <= 0xFFFF { frame += [0x80 | 126, UInt8(n >> 8), UInt8(n & 0xFF)] }
        else { frame.append(0x80 | 127); for i in (0..<8).reversed() { frame.append(UInt8((UInt64(n) >> (8 * UInt64(i))) & 0xFF)) } }
        let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
        frame += mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset & 3] }
        sendRaw(frame)
    }

    /// The next server frame, or nil at end of stream or after `seconds`.
    func readFrame(seconds: Double) throws -> (opcode: UInt8, payload: [UInt8])? {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            if buffered.count >= 2 {
                var length = Int(buffered[1] & 0x7F), offset = 2
                if length == 126, buffered.count >= 4 { length = Int(buffered[2]) << 8 | Int(buffered[3]); offset = 4 }
                else if length == 127, buffered.count >= 10 {
                    length = buffered[2..<10].reduce(0) { $0 << 8 | Int($1) }; offset = 10
                }
                if length < 126 || offset > 2, buffered.count >= offset + length {
                    let frame = (buffered[0] & 0x0F, Array(buffered[offset..<(offset + length)]))
                    buffered.removeFirst(offset + length)
                    return frame
                }
            }
            guard Date() < deadline, fill(until: deadline) else { return nil }
        }
    }

    /// The code of the close frame the server sends, skipping data frames; nil if none came.
    func closeCode(seconds: Double) -> Int? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline, let f = try? readFrame(seconds: deadline.timeIntervalSinceNow) {
            if f.opcode == 8 { return f.payload.count >= 2 ? Int(f.payload[0]) << 8 | Int(f.payload[1]) : 1005 }
        }
        return nil
    }

    /// Reads and discards until the server closes the connection (true) or `seconds` pass (false).
    func drainUntilClosed(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        var scratch = [UInt8](repeating: 0, count: 65_536)
        while Date() < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 200) >= 0 else { return false }
            if p.revents != 0 {
                let n = read(fd, &scratch, scratch.count)
                if n <= 0 { return true }
            }
        }
        return false
    }

    /// Reads what is there (waiting until `deadline`); false at end of stream or timeout.
    private func fill(until deadline: Date) -> Bool {
        let ms = Int32(max(0, min(1000, deadline.timeIntervalSinceNow * 1000)))
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, ms) > 0 else { return Date() < deadline }
        var scratch = [UInt8](repeating: 0, count: 65_536)
        let n = read(fd, &scratch, scratch.count)
        guard n > 0 else { return false }
        buffered += scratch[0..<n]
        return true
    }

    private func headEnd() -> Int? {
        guard buffered.count >= 4 else { return nil }
        for i in 0...(buffered.count - 4) where buffered[i] == 13 && buffered[i + 1] == 10 && buffered[i + 2] == 13 && buffered[i + 3] == 10 {
            return i + 4
        }
        return nil
    }
}


/// Sends `request` on a new connection and reads the response (each read bounded by 5 s).
private func httpRequest(port: UInt16, _ request: String) throws -> (status: Int, head: String, body: String) {
    let c = try RawWebSocket(port: port)
    c.sendRaw(Array(request.utf8))
    var tv = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var data = [UInt8](), buf = [UInt8](repeating: 0, count: 65_536)
    var expected: Int?
    while expected.map({ data.count < $0 }) ?? true {
        let n = read(c.fd, &buf, buf.count)
        if n < 0 { throw SocketError(description: "read: \(String(cString: strerror(errno)))") }
        if n == 0 { break }
        data.append(contentsOf: buf[0..<n])
        if expected == nil, let split = data.firstRange(of: Array("\r\n\r\n".utf8)) {
            let head = String(decoding: data[..<split.lowerBound], as: UTF8.self).lowercased()
            if let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
               let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) {
                expected = split.upperBound + length
            }
        }
    }
    guard let split = data.firstRange(of: Array("\r\n\r\n".utf8)) else {
        throw SocketError(description: "no HTTP response: \(String(decoding: data.prefix(100), as: UTF8.self))")
    }
    let head = String(decoding: data[..<split.lowerBound], as: UTF8.self)
    let status = head.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
    return (status, head, String(decoding: data[split.upperBound...], as: UTF8.self))
}
