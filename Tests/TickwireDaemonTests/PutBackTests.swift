import Testing
import TickwireCore
import TickwireNATS
import TickwireTradeClient
@testable import TickwireDaemon

/// The put-backs' bookkeeping: what is owed to the log stays owed until the journal holds it again.
@Suite(.timeLimit(.minutes(5))) struct PutBackTests {
    static let second: Int64 = 1_000_000_000

    static func message(_ id: String, formerSeq: UInt64) -> [UInt8] {
        var r = TradeRequest(desk: "D1", symbol: "AAPL", side: .buy, quantity: Quantity(e8: 100_000_000),
                             price: Price(e8: 18_725_000_000), clientOrderID: id)
        r.trader = "trader1"
        return TradeWire.encodeSequenced(r, receivedNanos: 1, markE8: 0, origin: "a", formerSeq: formerSeq)
    }

    static func key(_ id: String) -> TradeService.RetryKey { .init(trader: "trader1", clientOrderID: id) }

    @Test func sentInTheirOrderThenAgainAfterTheTimeoutOrSoonAfterARefusal() {
        var p = PutBacks(resendNanos: 10 * Self.second)
        p.add(file: "f", messages: [Self.message("b", formerSeq: 9), Self.message("a", formerSeq: 8), Self.message("c", formerSeq: 10)])
        #expect(p.due(now: 0).map(\.formerSeq) == [8, 9, 10])
        for e in p.due(now: 0) { p.sent(e.msgId, at: 0) }
        #expect(p.due(now: 9 * Self.second).isEmpty)
        let refused = p.answered("trader1/a", .failure(NATSError(status: 0, operation: "publish", text: "timeout")), now: Self.second)
        #expect(refused)
        #expect(p.due(now: 2 * Self.second).map(\.msgId) == ["trader1/a"])
        #expect(p.due(now: 10 * Self.second).count == 3)
        let unknown = p.answered("trader1/other", .success(.init(sequence: 3, duplicate: false)), now: 0)
        #expect(!unknown)
    }

    @Test func settledOnlyWhenTheJournalHoldsEveryTradeOfTheFile() {
        var p = PutBacks(resendNanos: 10 * Self.second)
        p.add(file: "f1", messages: [Self.message("a", formerSeq: 8), Self.message("b", formerSeq: 9)])
        p.add(file: "f2", messages: [Self.message("c", formerSeq: 20)])
        var held: Set<String> = ["a"]
        var settled = p.sweep(applied: 10, now: 0) { held.contains($0.clientOrderID) }
        #expect(settled.isEmpty)
        held.insert("c")
        settled = p.sweep(applied: 11, now: 0) { held.contains($0.clientOrderID) }
        #expect(settled == ["f2"])
        held.insert("b")
        // Nothing applied since and under a second: not looked at yet.
        settled = p.sweep(applied: 11, now: Self.second / 2) { held.contains($0.clientOrderID) }
        #expect(settled.isEmpty)
        settled = p.sweep(applied: 11, now: Self.second) { held.contains($0.clientOrderID) }
        #expect(settled == ["f1"])
        #expect(p.isEmpty)
    }

    /// The log says it holds the id at 12, but once applied through 12 the journal holds no such trade (its
    /// duplicate filter remembers an id its messages lost): the put-back goes in under an id of its own.
    @Test func aDuplicateClaimTheJournalDoesNotBearOutIsSentUnderAnIdOfItsOwn() {
        var p = PutBacks(resendNanos: 10 * Self.second)
        p.add(file: "f", messages: [Self.message("a", formerSeq: 8)])
        p.sent("trader1/a", at: 0)
        let claimed = p.answered("trader1/a", .success(.init(sequence: 12, duplicate: true)), now: 0)
        #expect(claimed)
        #expect(p.due(now: 20 * Self.second).isEmpty)   // waits for the journal to reach 12
        _ = p.sweep(applied: 11, now: 0) { _ in false }
        #expect(p.due(now: 0).isEmpty)
        _ = p.sweep(applied: 12, now: 0) { _ in false }
        #expect(p.due(now: 0).map(\.msgId) == ["trader1/a#reinstate-8"])
        let settled = p.sweep(applied: 13, now: 0) { _ in true }
        #expect(settled == ["f"])
    }
}
