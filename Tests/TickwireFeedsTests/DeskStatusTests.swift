import Foundation
import Testing
import TickwireCore
@testable import TickwireFeeds

/// What a desk watches at the open and the close: stock directory, LULD collars, NOII,
/// MWCB levels and RPII, published as STATUS events whose words are numbers (docs/PROTOCOL.md, "STATUS by
/// category"), checked field by field through the JSON lines a client reads.
@Suite struct DeskStatusTests {
    static let date = try! TradingDate(parsing: "2019-12-30")

    /// Big-endian bytes of an integer.
    static func be<T: FixedWidthInteger>(_ v: T) -> [UInt8] { (0..<(T.bitWidth / 8)).reversed().map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    static func header(_ type: Character, locate: UInt16, ts: UInt64 = 34_200_000_000_000) -> [UInt8] {
        [type.asciiValue!] + be(locate) + [0, 0] + Array(be(ts).suffix(6))
    }
    static func stock(_ s: String) -> [UInt8] { Array((s + String(repeating: " ", count: 8 - s.count)).utf8) }

    /// Runs messages through a normalizer; returns the JSON objects of its STATUS events.
    static func statuses(_ messages: [[UInt8]]) throws -> [[String: Any]] {
        let sink = CollectingSink()
        let n = ITCHNormalizer(sink: sink, clock: EasternClock(date: date))
        for m in messages {
            #expect(m.count == ITCHMessageType.length(ofType: m[0]), "a test message of the wrong length")
            m.withUnsafeBytes { n.handle(ITCHMessage(base: $0.baseAddress!, length: $0.count)) }
        }
        return try sink.events.filter { $0.kind == .status }.map {
            let line = EventText.jsonLine(WireEvent(subject: sink.subjects.text($0.subjectID), subjectSeq: 1, event: $0))
            return try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        }
    }

    static func number(_ o: [String: Any], _ k: String) -> String { "\(o[k] ?? "missing")" }

    @Test func stockDirectoryGivesCategoryLotSizeAndFlags() throws {
        // ZVZZT: Nasdaq Global Select (Q), normal (N), 100-share lots, not round lots only, common (C), LULD tier 1.
        var r = Self.header("R", locate: 9) + Self.stock("ZVZZT") + [UInt8(ascii: "Q"), UInt8(ascii: "N")] + Self.be(UInt32(100))
        r += [UInt8(ascii: "N"), UInt8(ascii: "C")] + Array("Z ".utf8) + [UInt8(ascii: "P"), UInt8(ascii: "N"), UInt8(ascii: " "), UInt8(ascii: "1"), UInt8(ascii: "N")]
        r += Self.be(UInt32(0)) + [UInt8(ascii: "N")]
        let s = try Self.statuses([r])
        #expect(s.count == 1)
        let o = try #require(s.first)
        #expect(o["subject"] as? String == "MD.XNAS.ZVZZT.STATUS" && o["category"] as? String == "directory")
        #expect(o["state"] as? String == "Q" && o["financial_status"] as? String == "N" && o["round_lots_only"] as? String == "N")
        #expect(o["issue_classification"] as? String == "C" && o["luld_tier"] as? String == "1")
        #expect(Self.number(o, "round_lot") == "100" && Self.number(o, "etp_leverage") == "0")
        #expect(o["reason"] == nil)
    }

    @Test func luldCollarsCarryReferenceUpperLowerAndExtension() throws {
        let j = Self.header("J", locate: 9) + Self.stock("ZVZZT") + Self.be(UInt32(1_005_000)) + Self.be(UInt32(1_105_500))
            + Self.be(UInt32(904_500)) + Self.be(UInt32(2))
        let o = try #require(try Self.statuses([j]).first)
        #expect(o["category"] as? String == "luld" && o["state"] as? String == "J")
        #expect(Self.number(o, "reference") == "100.5" && Self.number(o, "upper") == "110.55" && Self.number(o, "lower") == "90.45")
        #expect(Self.number(o, "extension") == "2")
    }

    @Test func mwcbLevelsAndRPIIAreExact() throws {
        let v = Self.header("V", locate: 0) + Self.be(UInt64(3_067_185_000_000)) + Self.be(UInt64(2_852_482_000_000)) + Self.be(UInt64(2_576_435_000_000))
        let n = Self.header("N", locate: 9) + Self.stock("ZVZZT") + [UInt8(ascii: "B")]
        let s = try Self.statuses([v, n])
        #expect(s.count == 2)
        #expect(s[0]["subject"] as? String == "MD.XNAS._FEED.STATUS" && s[0]["category"] as? String == "mwcbLevels")
        #expect(Self.number(s[0], "level1") == "30671.85" && Self.number(s[0], "level2") == "28524.82" && Self.number(s[0], "level3") == "25764.35")
        #expect(s[1]["subject"] as? String == "MD.XNAS.ZVZZT.STATUS" && s[1]["category"] as? String == "rpii" && s[1]["state"] as? String == "B")
    }

    /// The fixture's four real NOII messages, each as an imbalance and an indicative-price STATUS, field by field
    /// against the message's own bytes.
    @Test func noiiFromTheRealCaptureGivesImbalanceAndIndicativePrices() throws {
        let noii = SnapshotTests.messages.filter { $0[0] == UInt8(ascii: "I") }
        #expect(noii.count == 4)
        let s = try Self.statuses(SnapshotTests.messages)
        let imbalance = s.filter { $0["category"] as? String == "imbalance" }, indicative = s.filter { $0["category"] as? String == "indicative" }
        #expect(imbalance.count == 4 && indicative.count == 4)
        for (i, m) in noii.enumerated() where i < imbalance.count && i < indicative.count {
            let msg = m.withUnsafeBytes { ITCHMessage(base: $0.baseAddress!, length: $0.count).body }
            guard case .noii(let b) = msg else { Issue.record("not NOII"); continue }
            func e8(_ p: UInt32) -> String { "\(FixedPoint.format(e8: Int64(p) * 10_000))" }
            #expect(Self.number(imbalance[i], "paired") == "\(b.pairedShares)")
            #expect(Self.number(imbalance[i], "imbalance") == "\(b.imbalanceShares)")
            #expect(imbalance[i]["state"] as? String == String(UnicodeScalar(b.imbalanceDirection)))
            #expect(imbalance[i]["cross_type"] as? String == String(UnicodeScalar(b.crossType)))
            #expect(Self.number(imbalance[i], "reference") == e8(b.currentReferencePrice))
            #expect(Self.number(indicative[i], "near") == e8(b.nearPrice) && Self.number(indicative[i], "far") == e8(b.farPrice))
            #expect(imbalance[i]["subject"] as? String == "MD.XNAS.\(b.stock.text).STATUS")
        }
    }
}
