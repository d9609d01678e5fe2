import Foundation
import TickwireNATS
import TickwireTestSupport
import XCTest

/// The libnats module against a real three-node `nats-server` cluster on loopback.
final class NATSTests: XCTestCase {
    override class func setUp() {
        super.setUp()
        precondition(NATS.checkCompatibility(), "libnats headers and library differ")
    }

    func testServerListsAreParsedAndBadOnesNamed() throws {
        XCTAssertEqual(try NATS.parseServers("nats://a:4222, b:4223"), ["nats://a:4222", "nats://b:4223"])
        XCTAssertThrowsError(try NATS.parseServers("nats://a:4222,,")) { XCTAssert("\($0)".contains("empty server URL")) }
        XCTAssertThrowsError(try NATS.parseServers("http://a:80")) { XCTAssert("\($0)".contains("'http://a:80'")) }
        XCTAssertThrowsError(try NATS.parseServers("nats://a:99999")) { XCTAssert("\($0)".contains("not a NATS URL")) }
    }

    func testNoServerIsAClearErrorNamingTheURL() {
        let url = "nats://127.0.0.1:\(freePort())"
        var options = NATSConnection.Options(servers: [url])
        options.connectTimeoutMs = 500
        options.maxReconnect = 0
        XCTAssertThrowsError(try NATSConnection(options)) { error in
            XCTAssert("\(error)".contains(url), "\(error)")
            XCTAssert((error as? NATSError)?.isNoServer == true, "\(error)")
        }
    }

    /// Token-exact wildcards across servers: a subscriber on one server gets exactly its subjects from a
    /// publisher on another, in order.
    func testWildcardSubscriptionsAcrossTheClusterAreTokenExact() throws {
        let cluster = try NATSCluster(size: 3, jetStream: false)
        let pub = try NATSConnection(.init(servers: [cluster.servers[0].url]))
        let sub = try NATSConnection(.init(servers: [cluster.servers[2].url]))
        let got = Locked([String]())
        let s1 = try sub.subscribe("MD.XNAS.*.TRADE") { m in got.withLock { $0.append(m.subject + "=" + String(decoding: m.bytes, as: UTF8.self)) } }
        let s2 = try sub.subscribe("SYS.>") { m in got.withLock { $0.append(m.subject) } }
        try sub.flush()
        // Interest crosses the route asynchronously (the publisher's server counts subscriptions of its own too,
        // so its count says little): publish a probe until the subscriber gets one, then the subjects.
        try waitUntil(seconds: 30) {
            try? pub.publish(subject: "SYS.PROBE", bytes: [])
            try? pub.flush()
            return got.withLock { $0.contains("SYS.PROBE") }
        }
        let subjects = ["MD.XNAS.AAPL.TRADE", "MD.XNAS.AAPL.QUOTE", "MD.XNAS.AAPL.TRADE.X", "MD.XNYS.IBM.TRADE",
                        "SYS.GAP", "SYS.A.B", "SYSX.GAP", "MD.XNAS.MSFT.TRADE"]
        for (i, subject) in subjects.enumerated() {
            try pub.publish(subject: subject, bytes: Array("\(i)".utf8))
        }
        try pub.flush()
        try waitUntil(seconds: 10) { got.withLock { $0.filter { $0 != "SYS.PROBE" }.count } >= 4 }
        usleep(200_000)
        XCTAssertEqual(got.withLock { $0 }.filter { $0 != "SYS.PROBE" }.sorted(),
                       ["MD.XNAS.AAPL.TRADE=0", "MD.XNAS.MSFT.TRADE=7", "SYS.A.B", "SYS.GAP"])
        XCTAssertEqual(s1.dropped + s2.dropped, 0)
        withExtendedLifetime((s1, s2)) {}
    }

    /// A server dies under a connection: the connection says so, moves to another server of the list, and
    /// publishing resumes.
    func testAConnectionFailsOverWhenItsServerIsKilled() throws {
        let cluster = try NATSCluster(size: 3, jetStream: false)
        let events = Locked([NATSConnectionEvent]())
        var options = NATSConnection.Options(servers: cluster.servers.map(\.url))
        options.onEvent = { e in events.withLock { $0.append(e) } }
        let conn = try NATSConnection(options)
        let first = conn.connectedURL
        let index = cluster.servers.firstIndex { $0.url == first }!
        cluster.kill(index)
        try waitUntil(seconds: 20) {
            events.withLock { $0.contains { if case .reconnected = $0 { true } else { false } } }
        }
        XCTAssertNotEqual(conn.connectedURL, first)
        XCTAssert(events.withLock { $0.contains(.disconnected) })
        try conn.publish(subject: "x", bytes: [1])
        try conn.flush()
    }

    /// JetStream: a replicated stream, deduplication by message id, the stream-wide expected sequence, reading
    /// back by sequence, and an ordered consumer from a sequence.
    func testJetStreamStreamPublishDeduplicateAndReadInOrder() throws {
        let cluster = try NATSCluster(size: 3)
        let conn = try NATSConnection(.init(servers: cluster.servers.map(\.url)))
        let js = try conn.jetStream()
        var config = JetStream.StreamConfig(name: "T", subjects: ["T.>"])
        config.replicas = 3
        let info = try retrying { try js.addStream(config) }
        XCTAssertEqual(info.lastSequence, 0)
        let a = try retrying { try js.publish("T.req", bytes: [1], msgId: "trader-1") }
        XCTAssertEqual(a, JetStream.PubAck(sequence: 1, duplicate: false))
        let again = try js.publish("T.req", bytes: [9], msgId: "trader-1")
        XCTAssertEqual(again, JetStream.PubAck(sequence: 1, duplicate: true))
        XCTAssertEqual(try js.publish("T.req", bytes: [2], msgId: "trader-2", expectLastSequence: 1).sequence, 2)
        XCTAssertThrowsError(try js.publish("T.req", bytes: [3], msgId: "trader-3", expectLastSequence: 1)) {
            XCTAssertNotEqual(($0 as? NATSError)?.jetStreamCode, 0, "\($0)")
        }
        let stored = try js.message(stream: "T", sequence: 2)
        XCTAssertEqual(stored.bytes, [2])
        XCTAssertEqual(stored.msgId, "trader-2")

        let acked = Locked([UInt64]())
        var opts = JetStream.Options()
        opts.onAsyncAck = { _, result in if case .success(let ack) = result { acked.withLock { $0.append(ack.sequence) } } }
        let asyncJS = try conn.jetStream(opts)
        for i in 3...100 { try asyncJS.publishAsync("T.req", bytes: [UInt8(i)], msgId: "trader-\(i)") }
        try asyncJS.publishAsyncComplete(timeoutMs: 10_000)
        XCTAssertEqual(acked.withLock { $0.count }, 98)

        let seen = Locked([UInt64]())
        let sub = try js.subscribeOrdered(stream: "T", subject: "T.>", startSequence: 50) { m in
            seen.withLock { $0.append(m.streamPosition!.sequence) }
        }
        try waitUntil(seconds: 10) { seen.withLock { $0.count } >= 51 }
        XCTAssertEqual(seen.withLock { $0 }, Array(50...100))
        withExtendedLifetime(sub) {}
    }

    /// A message's stored time is the same whether an ordered consumer delivers it or it is read by sequence:
    /// the refusal of an undecodable log message carries that time, written by either path and checked by reading.
    func testStoredTimeIsTheSameByConsumerAndByRead() throws {
        let cluster = try NATSCluster(size: 1)
        let conn = try NATSConnection(.init(servers: [cluster.servers[0].url]))
        let js = try conn.jetStream()
        _ = try retrying { try js.addStream(JetStream.StreamConfig(name: "S", subjects: ["S.x"])) }
        for i in 0..<50 { _ = try js.publish("S.x", bytes: [UInt8(i)]) }
        let delivered = Locked([UInt64: Int64]())
        let sub = try js.subscribeOrdered(stream: "S", subject: "S.x", startSequence: 1) { m in
            let p = m.streamPosition!
            delivered.withLock { $0[p.sequence] = p.timestampNanos }
        }
        try waitUntil(seconds: 10) { delivered.withLock { $0.count } == 50 }
        for seq in 1...UInt64(50) {
            XCTAssertEqual(try js.message(stream: "S", sequence: seq).timestampNanos, delivered.withLock { $0[seq] }, "seq \(seq)")
        }
        withExtendedLifetime(sub) {}
    }

}

func waitUntil(seconds: Double, file: StaticString = #filePath, line: UInt = #line, _ condition: () -> Bool) throws {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() {
        if Date() > deadline {
            XCTFail("condition not met in \(seconds) s", file: file, line: line)
            throw CancellationError()
        }
        usleep(20_000)
    }
}

/// A value behind a lock, for handlers on libnats' threads.
extension NATSTests {
    /// Batched writes (`Options.batchedWrites`): what a thread publishes between `beginWriteBatch` and
    /// `endWriteBatch` reaches a subscriber on another server whole and in order; a publish outside a batch goes
    /// out at once; the rest of the protocol (flush, request/reply, pings) runs on the module's socket thread; and
    /// after kill -9 of its server the connection carries on from another.
    func testBatchedWritesDeliverInOrderAndTheConnectionFailsOver() throws {
        let cluster = try NATSCluster(size: 3, jetStream: false)
        var options = NATSConnection.Options(servers: cluster.servers.map(\.url))
        options.batchedWrites = true
        options.reconnectWaitMs = 100
        let pub = try NATSConnection(options)
        let home = cluster.servers.firstIndex { $0.url == pub.connectedURL }!
        let other = (home + 1) % 3
        let sub = try NATSConnection(.init(servers: [cluster.servers[other].url]))
        let got = Locked([UInt32]())
        let s = try sub.subscribe("T.>", pendingLimit: -1) { m in
            m.withBytes { b in got.withLock { $0.append(b.loadUnaligned(as: UInt32.self)) } }
        }
        let responder = try sub.subscribe("ASK") { m in
            if let reply = m.reply { try? sub.publish(subject: reply, bytes: m.bytes + [1]) }
        }
        try sub.flush()
        // Interest crosses the route asynchronously: probe (outside any batch, with no flush) until one arrives.
        var next: UInt32 = 0
        func send(_ n: UInt32) { withUnsafeBytes(of: n) { _ = pub.tryPublish(subject: "T.X", bytes: $0) } }
        try waitUntil(seconds: 30) {
            if got.withLock({ $0.isEmpty }) { send(next); next += 1; usleep(20_000) }
            return !got.withLock { $0.isEmpty }
        }
        // Probes sent before the interest arrived are gone (a loaded run lost the first): from the first that
        // arrived on, every one must.
        try waitUntil(seconds: 10) { got.withLock { $0.last } == next - 1 }
        let first = got.withLock { $0.first! }
        // Batches of 1 to 500, seeded.
        var rng = SystemRandomNumberGenerator()
        let seed = UInt64.random(in: 0...UInt64(UInt32.max), using: &rng)
        var state = seed
        func batch(upTo total: UInt32) {
            while next < total {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                let size = 1 + UInt32(state >> 33) % 500
                pub.beginWriteBatch()
                for _ in 0..<min(size, total - next) { send(next); next += 1 }
                pub.endWriteBatch()
            }
        }
        batch(upTo: 20_000)
        // Request/reply and flush ride the socket thread (the reply is read there, the request written there).
        XCTAssertEqual(try pub.request("ASK", bytes: [7], timeoutMs: 5_000), [7, 1], "seed \(seed)")
        try pub.flush()
        try waitUntil(seconds: 20) { got.withLock { $0.count } >= Int(next - first) }
        XCTAssertEqual(got.withLock { $0 }, Array(first..<next), "seed \(seed)")

        // kill -9 of the publisher's server: it reconnects to another, and batches reach the subscriber again.
        cluster.kill(home)
        try waitUntil(seconds: 30) { pub.isConnected && pub.connectedURL != cluster.servers[home].url }
        let resumedAt = next
        try waitUntil(seconds: 30) {
            batch(upTo: next + 10)
            usleep(50_000)
            return got.withLock { $0.last ?? 0 } >= resumedAt
        }
        let before = next
        batch(upTo: next + 20_000)
        try pub.flush()
        try waitUntil(seconds: 20) { got.withLock { $0.last } == next - 1 }
        let after = got.withLock { $0.filter { $0 >= before } }
        XCTAssertEqual(after, Array(before..<next), "seed \(seed)")
        XCTAssertEqual(s.dropped, 0)
        withExtendedLifetime((s, responder)) {}
    }
}

final class Locked<T>: @unchecked Sendable {
    private var value: T
    private let lock = NSLock()
    init(_ value: T) { self.value = value }
    func withLock<R>(_ body: (inout T) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
