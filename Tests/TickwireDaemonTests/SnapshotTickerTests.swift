import Foundation
import Testing
import TickwireClient
import TickwireCore

/// Stale books as a trader sees them: a STATUS of category `book` crosses the wire as any
/// STATUS does, the ticker marks the row STALE without losing its trading state, and clears it when rebuilt.
@Suite struct SnapshotTickerTests {
    func delivery(_ subject: String, _ status: Status, seq: UInt64) throws -> Delivery {
        let e = Event.status(0, status, eventTime: Nanos(1), knownTime: Nanos(2))
        // Through the wire codec, as a subscriber gets it.
        let decoded = try WireCodec.decode(WireCodec.encode(e, subjectSeq: seq))
        return .event(WireEvent(subject: subject, subjectSeq: decoded.subjectSeq, event: decoded.event))
    }

    @Test func aStaleBookIsShownUntilItIsRebuiltAndKeepsItsTradingState() throws {
        var m = TickerModel(endpoint: "tcp://x")
        let t0 = Nanos(1_000_000_000_000)
        m.apply(try delivery("MD.XNAS.AAPL.STATUS", Status(category: .trading, state: UInt8(ascii: "T")), seq: 1), now: t0)
        m.apply(try delivery("MD.XNAS.AAPL.STATUS", .stale("GAP"), seq: 2), now: t0)
        #expect(m.rows["AAPL.XNAS"]?.stale == true)
        #expect(m.rows["AAPL.XNAS"]?.status == "T")
        #expect(m.staleRows == 1)
        #expect(TickerRenderer.plainLines(m)[1].contains("T STALE"))
        #expect(TickerRenderer.frame(m, width: 120, height: 10, now: t0, color: false).contains("1 STALE"))
        m.apply(try delivery("MD.XNAS.AAPL.STATUS", .rebuilt, seq: 3), now: t0)
        #expect(m.rows["AAPL.XNAS"]?.stale == false)
        #expect(m.staleRows == 0)
        #expect(!TickerRenderer.plainLines(m)[1].contains("STALE"))
    }

    @Test func theDesksCategoriesDoNotOverwriteTheTradingState() throws {
        var m = TickerModel(endpoint: "tcp://x")
        let t0 = Nanos(1_000_000_000_000)
        m.apply(try delivery("MD.XNAS.AAPL.STATUS", Status(category: .trading, state: UInt8(ascii: "H")), seq: 1), now: t0)
        let directory = Event.status(0, .directory, state: UInt8(ascii: "Q"), 0, 100 * 100_000_000, 0, eventTime: Nanos(1), knownTime: Nanos(2))
        m.apply(.event(WireEvent(subject: "MD.XNAS.AAPL.STATUS", subjectSeq: 2, event: directory)), now: t0)
        #expect(m.rows["AAPL.XNAS"]?.status == "H")
    }

    @Test func theStaleStatusReadsAsDocumentedInJSONLines() throws {
        guard case .event(let w) = try delivery("MD.XNAS.AAPL.STATUS", .stale("SEQJUMP"), seq: 1) else { Issue.record("no event"); return }
        let line = EventText.jsonLine(w)
        #expect(line.contains("\"category\":\"book\""))
        #expect(line.contains("\"state\":\"S\""))
        #expect(line.contains("\"reason\":\"SEQJUMP\""))
        #expect(w.event.status == .stale("SEQJUMP") && w.event.status.isStale)
    }
}
