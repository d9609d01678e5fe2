import Foundation
import Synchronization
import Testing
import TickwireCore
import TickwireZMQ
@testable import TickwireDaemon

/// The one retrying submitter (`tickwire trade submit`, the replicated tests' client, the failover bench) against a
/// real trade service: a refusal that says "not now" (REJECT 7) is resent with the same id until accepted, a final
/// refusal is handed back, and a trade with no reply is resent and then given up on by name.
@Suite(.serialized, .timeLimit(.minutes(5))) struct RetryingSubmitterTests {
    /// A pre-trade check that refuses each id with REJECT 7 (replication unavailable) its first `times` times.
    final class RefuseFirst: Sendable {
        let times: Int
        let seen = Mutex<[String: Int]>([:])
        init(times: Int) { self.times = times }
        func check(_ r: TradeRequest) -> RejectReason? {
            let n = seen.withLock { s in s[r.clientOrderID, default: 0] += 1; return s[r.clientOrderID]! }
            return n <= times ? RejectReason(.replicationUnavailable, "replicated log unavailable (test)") : nil
        }
        func attempts(_ id: String) -> Int { seen.withLock { $0[id] ?? 0 } }
    }

    @Test func aTransientRefusalIsResentWithTheSameIdUntilAccepted() throws {
        let refuse = RefuseFirst(times: 2)
        let s = try RunningTradeService(check: { refuse.check($0) })
        defer { s.service.stop() }
        let ctx = ZMQContext()
        let client = try s.client(ctx)
        defer { client.close() }
        let submitter = RetryingSubmitter(client: client, policy: .init(resendAfterMs: 5_000, resendRefusedAfterMs: 20, giveUpAfterMs: 20_000))
        let ids = (0..<50).map { "rs-\($0)" }
        try submitter.send(ids.map { tradeOrder($0) }, batch: 16)
        var outcomes: [String: RetryingSubmitter.Outcome] = [:]
        try submitter.drain { outcomes[$0.clientOrderID] = $0 }
        #expect(outcomes.count == ids.count)
        var seqs = Set<UInt64>()
        for id in ids {
            guard case .replied(.ack(_, let seq, let duplicate)) = outcomes[id] else {
                Issue.record("\(id): \(String(describing: outcomes[id]))"); continue
            }
            #expect(!duplicate)
            seqs.insert(seq)
            #expect(refuse.attempts(id) == 3, "\(id) reached the check \(refuse.attempts(id)) times")
        }
        #expect(seqs.count == ids.count, "each id one trade")
        #expect(submitter.refusedAndResent == 2 * ids.count)
        #expect(submitter.resends == 0)
    }

    @Test func withoutResendsARefusalIsFinal() throws {
        let refuse = RefuseFirst(times: 1)
        let s = try RunningTradeService(check: { refuse.check($0) })
        defer { s.service.stop() }
        let ctx = ZMQContext()
        let client = try s.client(ctx)
        defer { client.close() }
        // `tickwire trade submit` with one endpoint and no --retry-ms.
        let submitter = RetryingSubmitter(client: client, policy: .init(resendAfterMs: nil, giveUpAfterMs: 10_000))
        try submitter.send([tradeOrder("once")])
        var outcome: RetryingSubmitter.Outcome?
        try submitter.drain { outcome = $0 }
        guard case .replied(.reject(_, let why)) = outcome else { Issue.record("\(String(describing: outcome))"); return }
        #expect(why.code == .replicationUnavailable)
        #expect(refuse.attempts("once") == 1)
    }

    @Test func aTradeWithNoReplyIsResentThenGivenUpOnByName() throws {
        let s = try RunningTradeService()
        let ctx = ZMQContext()
        let client = try s.client(ctx)
        defer { client.close() }
        s.service.stop()   // keys stay; nothing answers any more
        let submitter = RetryingSubmitter(client: client, policy: .init(resendAfterMs: 100, giveUpAfterMs: 700))
        let start = Date()
        try submitter.send([tradeOrder("lost")])
        var outcome: RetryingSubmitter.Outcome?
        try submitter.drain { outcome = $0 }
        #expect(outcome == .noReply(clientOrderID: "lost", milliseconds: 700))
        #expect(submitter.resends >= 3, "resent \(submitter.resends) times in 700 ms at 100 ms")
        #expect(Date().timeIntervalSince(start) < 5)
    }
}
