import Foundation
import Testing
import TickwireCore
@testable import TickwireDaemon

/// The NATS publisher's two state machines, fed without sockets: the loss tracker that turns unsent messages
/// into GAP ranges, and the queue the ZeroMQ publisher hands payloads over on.
@Suite struct NATSLossTrackerTests {
    @Test func anOutageIsOneRangePerStreamAndQueueDropsAreSeenAsJumps() {
        var t = NATSLossTracker()
        // MD 1...3 sent; 4...6 fail (no server); ALERT 1 fails in between; MD 7 sent; MD 9 arrives (8 dropped).
        for s in 1...3 as ClosedRange<UInt64> { t.arrived(stream: 0, seq: s) }
        for s in 4...5 as ClosedRange<UInt64> { t.arrived(stream: 0, seq: s); t.failed(stream: 0, seq: s) }
        t.arrived(stream: 1, seq: 1); t.failed(stream: 1, seq: 1)
        t.arrived(stream: 0, seq: 6); t.failed(stream: 0, seq: 6)
        t.arrived(stream: 0, seq: 7)
        t.arrived(stream: 0, seq: 9)
        #expect(t.pending == [.init(stream: 0, first: 4, last: 6), .init(stream: 1, first: 1, last: 1),
                              .init(stream: 0, first: 8, last: 8)])
        #expect(t.lost == 5)
        let taken = t.take()
        #expect(!t.hasPending)
        // Reporting failed for the last two; a loss that continues one of them joins it.
        t.arrived(stream: 0, seq: 10); t.failed(stream: 0, seq: 10)
        t.giveBack(Array(taken.dropFirst()))
        #expect(t.pending == [.init(stream: 1, first: 1, last: 1), .init(stream: 0, first: 8, last: 8),
                              .init(stream: 0, first: 10, last: 10)])
        t.arrived(stream: 0, seq: 11); t.failed(stream: 0, seq: 11)
        #expect(t.pending.last == .init(stream: 0, first: 10, last: 11))
    }

    @Test func theHandoffKeepsOrderDropsWhenFullAndEndsAfterClose() {
        let q = NATSHandoff(capacity: 8)
        var payload = [UInt8](repeating: 0, count: WireCodec.payloadSize)
        var pushed = 0
        for i in 0..<12 {
            payload[8] = UInt8(i)
            if payload.withUnsafeBytes({ q.push(subjectID: SubjectID(i), payload: $0.baseAddress!) }) { pushed += 1 }
        }
        #expect(pushed == 8)
        #expect(q.dropped.load(ordering: .relaxed) == 4)
        var got: [(SubjectID, UInt8)] = []
        #expect(q.drain(maxBatch: 5, timeoutNanos: 0) { id, p in got.append((id, p[8])) } == 5)
        #expect(q.drain(maxBatch: 100, timeoutNanos: 0) { id, p in got.append((id, p[8])) } == 3)
        #expect(got.map(\.0) == Array(0..<8) && got.map(\.1) == Array(0..<8))
        // Room again after the reads; then close: drained, then -1.
        payload[8] = 42
        #expect(payload.withUnsafeBytes { q.push(subjectID: 99, payload: $0.baseAddress!) })
        q.close()
        #expect(q.drain(maxBatch: 10, timeoutNanos: 1_000_000_000) { id, p in got.append((id, p[8])) } == 1)
        #expect(got.last! == (99, 42))
        #expect(q.drain(maxBatch: 10, timeoutNanos: 1_000_000_000) { _, _ in } == -1)
    }

    @Test func aParkedConsumerIsWokenByThePublisher() throws {
        let q = NATSHandoff(capacity: 1024)
        let received = NATSTestBox(0)
        let t = Thread {
            var n = 0
            while n < 10_000 {
                let r = q.drain(maxBatch: 256, timeoutNanos: 5_000_000_000) { _, _ in n += 1 }
                if r < 0 { break }
            }
            received.set(n)
        }
        t.start()
        var payload = [UInt8](repeating: 0, count: WireCodec.payloadSize)
        var sent = 0
        while sent < 10_000 {
            if payload.withUnsafeBytes({ q.push(subjectID: 1, payload: $0.baseAddress!) }) { sent += 1 } else { usleep(100) }
            if sent % 100 == 0 { q.wakeConsumer(); usleep(200) }
            payload[9] &+= 1
        }
        q.wakeConsumer()
        try natsWaitUntil(seconds: 60) { received.get() == 10_000 }
    }
}

/// A value shared with other threads under a lock (tests only).
final class NATSTestBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func get() -> T { lock.withLock { value } }
    func set(_ v: T) { lock.withLock { value = v } }
    func update<R>(_ body: (inout T) -> R) -> R { lock.withLock { body(&value) } }
}

struct NATSTestTimeout: Error, CustomStringConvertible {
    let what: String
    var description: String { what }
}

/// Polls `condition` every 20 ms for at most `seconds`.
func natsWaitUntil(seconds: Double, _ what: String = "condition", _ condition: () -> Bool) throws {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return }
        usleep(20_000)
    }
    if condition() { return }
    throw NATSTestTimeout(what: "\(what) not met within \(seconds) s")
}

/// `[publish.nats]` and `[publish] snapshot_endpoint` in the config file.
@Suite struct NATSConfigTests {
    @Test func publishNatsIsReadAndItsMistakesNamed() throws {
        let c = try DaemonConfig.parse(toml: """
        [publish]
        snapshot_endpoint = "tcp://127.0.0.1:5558"
        [publish.nats]
        servers = ["nats://a:4222", "b:4223"]
        required = true
        send_asap = false
        """)
        #expect(c.natsServers == ["nats://a:4222", "nats://b:4223"] && c.natsRequired && !c.natsSendAsap)
        #expect(c.snapshotEndpoint == "tcp://127.0.0.1:5558")
        #expect(try DaemonConfig.parse(toml: "[publish.nats]\nservers = \"nats://a:1,nats://b:2\"\n").natsServers.count == 2)
        for (text, key) in [("[publish.nats]\nservers = \"http://x:1\"\n", "publish.nats.servers"),
                            ("[publish.nats]\nservers = \"nats://a:1\"\nrequired = \"yes\"\n", "publish.nats.required"),
                            ("[publish.nats]\nservers = \"nats://a:1\"\nsendasap = true\n", "publish.nats.sendasap"),
                            ("[publish]\nnats = \"nats://a:1\"\n", "publish.nats")] {
            #expect(throws: ConfigError.self) { try DaemonConfig.parse(toml: text) }
            do { _ = try DaemonConfig.parse(toml: text) } catch { #expect(error.key == key, "\(text): \(error)") }
        }
    }
}
