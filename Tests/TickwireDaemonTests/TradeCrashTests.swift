import Foundation
import TickwireTestSupport
import Testing
import TickwireCore
import TickwireJournal
import TickwireZMQ
@testable import TickwireDaemon

/// kill -9 of a real `tickwire run` during bursts of trade submissions from several clients, many times over:
/// every acknowledged trade must be in the journal exactly once with the acknowledged sequence, every trade at
/// most once, and the hash chain must verify.
@Suite(.serialized) struct TradeCrashTests {
    static func listening(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    final class Ledger: @unchecked Sendable {
        private let lock = NSLock()
        var acked: [String: UInt64] = [:]
        var sent: Set<String> = []
        func sent(_ id: String) { lock.lock(); sent.insert(id); lock.unlock() }
        func ack(_ id: String, _ seq: UInt64) -> Bool {
            lock.lock(); defer { lock.unlock() }
            if let old = acked[id], old != seq { return false }
            acked[id] = seq
            return true
        }
        func unacked(prefix: String) -> [String] {
            lock.lock(); defer { lock.unlock() }
            return sent.filter { $0.hasPrefix(prefix) && acked[$0] == nil }.sorted()
        }
        var ackedCount: Int { lock.lock(); defer { lock.unlock() }; return acked.count }
    }

    /// 64 KiB journal segments, so kills also land while segments roll, while the next one is being prepared,
    /// and while records are written into a pre-extended one.
    @Test func ackedTradesSurviveKillNineExactlyOnce() throws {
        let binary = tickwireBinary
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            Issue.record("no tickwire binary at \(binary): build it first (swift build)")
            return
        }
        let dir = TradeTempDir()
        let cycles = 20, clients = 3
        let ledger = Ledger()
        var conflicting = 0
        var rng = SystemRandomNumberGenerator()
        for cycle in 0..<cycles {
            let tradePort = freePort(), pubPort = freePort(), metricsPort = freePort()
            let config = dir.path + "/tickwire.toml"
            try """
            data = "\(dir.path)"
            log_level = "error"
            [publish]
            endpoint = "tcp://127.0.0.1:\(pubPort)"
            [metrics]
            endpoint = "127.0.0.1:\(metricsPort)"
            [trades]
            endpoint = "tcp://127.0.0.1:\(tradePort)"
            journal_segment_bytes = 65536
            """.write(toFile: config, atomically: true, encoding: .utf8)
            let daemon = try ChildProcess(binary, ["run", "--config", config, "--rate", "100"])
            let deadline = Date().addingTimeInterval(10)
            while !Self.listening(tradePort) && daemon.isRunning && Date() < deadline { usleep(5_000) }
            guard Self.listening(tradePort) else {
                daemon.kill9()
                Issue.record("cycle \(cycle): the daemon did not listen on \(tradePort)")
                return
            }
            let endpoint = "tcp://127.0.0.1:\(tradePort)"
            let killAfter = UInt32.random(in: 30_000...250_000, using: &rng)
            let group = DispatchGroup()
            let bad = TradeCrashBox(0)
            for c in 0..<clients {
                group.enter()
                Thread.detachNewThread {
                    defer { group.leave() }
                    let ctx = ZMQContext()
                    guard let client = try? TradeClient.forDataDirectory(dir.path, context: ctx, endpoint: endpoint) else { return }
                    defer { client.close() }
                    // Retry what the last crash left unanswered first (same ids: never a second trade), then new ones.
                    var ids = ledger.unacked(prefix: "c\(c)-")
                    // More than any cycle lasts, so the kill lands mid-burst.
                    for i in 0..<5_000 { ids.append("c\(c)-\(cycle)-\(i)") }
                    var next = 0, inFlight = 0
                    while next < ids.count || inFlight > 0 {
                        while next < ids.count && inFlight < 32 {
                            let id = ids[next]
                            ledger.sent(id)
                            guard (try? client.send(TradeRequest(desk: "D\(c)", symbol: "AAPL", side: .buy,
                                                                 quantity: Quantity(e8: 100_000_000), price: Price(e8: 18_725_000_000),
                                                                 clientOrderID: id))) != nil else { return }
                            next += 1; inFlight += 1
                        }
                        guard let reply = try? client.receive(timeoutMs: 300) else { return }   // the daemon is gone
                        inFlight -= 1
                        if case .ack(let id, let seq, _) = reply, !ledger.ack(id, seq) { bad.update { $0 += 1 } }
                    }
                }
            }
            usleep(killAfter)
            daemon.kill9()
            if group.wait(timeout: .now() + 60) == .timedOut {
                Issue.record("cycle \(cycle): a client did not finish within 60 s of the kill")
                return
            }
            conflicting += bad.value
        }
        print("kill -9: \(cycles) cycles, \(ledger.ackedCount) trades acknowledged of \(ledger.sent.count) sent")
        #expect(conflicting == 0, "a retry was acknowledged with a different sequence")
        #expect(ledger.ackedCount > 0)

        // The journal after all the crashes: the chain verifies; each acked trade once, at its sequence; nothing twice.
        let journal = dir.path + "/journal"
        let v = try JournalAudit.verify(directory: journal)
        #expect(v.ok, "\(String(describing: v.corruption))")
        #expect(v.segments > 3, "the cycles rolled the journal's segments")
        var seen: [String: [UInt64]] = [:]
        try JournalAudit.forEach(directory: journal) { r in
            if let t = TradeWire.decodeRecord(r.payload) { seen[t.clientOrderID, default: []].append(r.seq) }
        }
        let duplicated = seen.filter { $0.value.count > 1 }
        #expect(duplicated.isEmpty, "recorded twice: \(duplicated.prefix(5))")
        let missing = ledger.acked.filter { seen[$0.key] != [$0.value] }
        #expect(missing.isEmpty, "acknowledged but absent or at another sequence: \(missing.prefix(5))")
        #expect(Set(seen.keys).isSubset(of: ledger.sent))
    }
}

private final class TradeCrashBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var v: T
    init(_ v: T) { self.v = v }
    func update(_ body: (inout T) -> Void) { lock.lock(); body(&v); lock.unlock() }
    var value: T { lock.lock(); defer { lock.unlock() }; return v }
}
