import Testing
import TickwireCore
import TickwireTradeClient

/// The replicated log's message and the decision record (docs/STORAGE.md, "Replicated trades"), including a
/// reinstated trade's first sequence.
@Suite(.timeLimit(.minutes(5))) struct SequencedWireTests {
    let trade = TradeRequest(trader: "t1", desk: "D", symbol: "AAPL", side: .buy, quantity: Quantity(e8: 100_000_000),
                             price: Price(e8: 19_995_000_000), clientOrderID: "ord-1")

    @Test func aMessageRoundTripsAndOnlyAReinstatedOneIsVersionTwo() throws {
        let plain = TradeWire.encodeSequenced(trade, receivedNanos: 7, markE8: 8, origin: "a")
        #expect(plain.first == 1)
        let p = try #require(TradeWire.decodeSequenced(plain))
        #expect(p.request == trade && p.receivedNanos == 7 && p.markE8 == 8 && p.origin == "a" && p.formerSeq == 0)
        let again = TradeWire.encodeSequenced(trade, receivedNanos: 7, markE8: 8, origin: "a", formerSeq: 42)
        #expect(again.first == 2 && again.count == plain.count + 8)
        let r = try #require(TradeWire.decodeSequenced(again))
        #expect(r.request == trade && r.receivedNanos == 7 && r.markE8 == 8 && r.origin == "a" && r.formerSeq == 42)
    }

    @Test func aVersionTwoMessageWithoutAFirstSequenceOrTruncatedIsRefused() {
        var zero = TradeWire.encodeSequenced(trade, receivedNanos: 7, markE8: 8, origin: "a", formerSeq: 42)
        for i in 20..<28 { zero[i] = 0 }
        #expect(TradeWire.decodeSequenced(zero) == nil)
        let whole = TradeWire.encodeSequenced(trade, receivedNanos: 7, markE8: 8, origin: "a", formerSeq: 42)
        for n in 0..<whole.count { #expect(TradeWire.decodeSequenced(Array(whole.prefix(n))) == nil, "\(n) bytes") }
    }

    @Test func aReinstatedDecisionNamesItsFirstSequence() throws {
        let record = TradeWire.encodeDecision(.accepted, request: trade, markE8: 8, origin: "a", formerSeq: 42)
        let d = try #require(TradeWire.decodeDecision(record))
        #expect(d.decision == .accepted && d.formerSeq == 42 && d.request == trade)
        #expect(TradeWire.auditFields(record)?.contains("\"reinstated_from_seq\":42") == true)
        let duplicate = try #require(TradeWire.decodeDecision(TradeWire.encodeDecision(.duplicate(of: 9), request: trade, markE8: 8, origin: "a")))
        #expect(duplicate.decision == .duplicate(of: 9) && duplicate.formerSeq == 0)
        #expect(TradeWire.auditFields(TradeWire.encodeDecision(.accepted, request: trade, markE8: 8, origin: "a"))?.contains("reinstated") == false)
    }
}
