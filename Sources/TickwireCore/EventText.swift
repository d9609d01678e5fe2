/// The JSON-lines and text renderings of events shared by `tail`, `decode`, `replay` and `audit`.
///
/// JSONL fields: `subject`, `kind`, `seq`, `subject_seq`, `event_time`, `known_time` (integer nanoseconds),
/// then per kind: TRADE `price`, `size`, `side`, `trade_id`; QUOTE `bid`, `bid_size`, `ask`, `ask_size`;
/// STATUS `category`, `state`, `reason` (for the desk categories, their numbers instead: docs/PROTOCOL.md); BUST `trade_id`, `price`, `size`, `side`; GAP `first`, `last`, `scope`;
/// ALERT `rule`, `value`, `threshold`, `reference`; RISK `position`, `notional`, `pnl`, `used_bp`;
/// BOOK `side` (bid|ask), `level` (0 = best), `price`, `size` (both 0: the level is empty), `levels` (on that side).
/// Prices and sizes are JSON numbers printing the fixed-point value exactly.
public enum EventText {
    public static func jsonLine(_ w: WireEvent) -> String {
        var out = [UInt8]()
        out.reserveCapacity(256)
        appendJSON(subject: w.subject, subjectSeq: w.subjectSeq, event: w.event, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    public static func appendJSON(subject: String, subjectSeq: UInt64, event e: Event, to out: inout [UInt8]) {
        func key(_ k: String) { out.append(contentsOf: ",\"\(k)\":".utf8) }
        func str(_ k: String, _ v: String) { key(k); appendJSONString(v, to: &out) }
        func int(_ k: String, _ v: Int64) { key(k); FixedPoint.appendSigned(v, to: &out) }
        func uint(_ k: String, _ v: UInt64) { key(k); FixedPoint.appendUnsigned(v, to: &out) }
        func dec(_ k: String, _ v: Int64) { key(k); FixedPoint.appendDecimal(e8: v, to: &out) }
        out.append(contentsOf: "{\"subject\":".utf8)
        appendJSONString(subject, to: &out)
        str("kind", e.kind.name)
        uint("seq", e.seq)
        uint("subject_seq", subjectSeq)
        int("event_time", e.eventTime.rawValue)
        int("known_time", e.knownTime.rawValue)
        switch e.kind {
        case .trade:
            let t = e.trade
            dec("price", t.price.e8); dec("size", t.size.e8); str("side", t.side.description); uint("trade_id", t.tradeID)
        case .quote:
            dec("bid", e.a); dec("bid_size", e.b); dec("ask", e.c); dec("ask_size", e.d)
        case .status:
            let s = e.status
            str("category", "\(s.category)")
            str("state", String(decoding: [s.state], as: UTF8.self))
            if s.category.hasNumbers {
                let extra = UInt64(bitPattern: e.a) >> 8
                func ascii(_ v: UInt64) -> String { String(decoding: [UInt8(truncatingIfNeeded: v)], as: UTF8.self) }
                switch s.category {
                case .luld: dec("reference", e.b); dec("upper", e.c); dec("lower", e.d); uint("extension", extra)
                case .directory:
                    dec("round_lot", e.c)
                    let f = UInt64(bitPattern: e.b)
                    str("financial_status", ascii(f)); str("round_lots_only", ascii(f >> 8)); str("issue_classification", ascii(f >> 16))
                    str("luld_tier", ascii(f >> 24)); uint("etp_leverage", UInt64(bitPattern: e.d))
                case .imbalance: dec("paired", e.b); dec("imbalance", e.c); dec("reference", e.d); str("cross_type", ascii(extra)); str("variation", ascii(extra >> 8))
                case .indicative: dec("near", e.b); dec("far", e.c); dec("reference", e.d)
                case .mwcbLevels: dec("level1", e.b); dec("level2", e.c); dec("level3", e.d)
                default: break
                }
            } else {
                str("reason", s.reason)
            }
        case .bust:
            let b = e.bustBody
            uint("trade_id", b.tradeID); dec("price", b.price.e8); dec("size", b.size.e8); str("side", b.side.description)
        case .gap:
            let g = e.gapBody
            uint("first", g.first); uint("last", g.last); str("scope", g.scope == .publisher ? "publisher" : "source")
        case .alert:
            let a = e.alertBody
            uint("rule", UInt64(a.rule)); dec("value", a.value); dec("threshold", a.threshold)
            // STALE_QUOTE's reference is the last quote's time in nanoseconds, not a ×1e8 value.
            if a.rule == 5 { int("reference", a.reference) } else { dec("reference", a.reference) }
        case .risk:
            let r = e.riskBody
            dec("position", r.position); dec("notional", r.notional); dec("pnl", r.pnl); int("used_bp", r.usedBasisPoints)
        case .book:
            str("side", e.flags == Side.buy.rawValue ? "bid" : "ask"); uint("level", UInt64(bitPattern: e.c))
            dec("price", e.a); dec("size", e.b); uint("levels", UInt64(bitPattern: e.d))
        }
        out.append(UInt8(ascii: "}"))
    }

    /// A human line: `2019-12-30T14:30:00.000000230Z MD.XNAS.AAPL.TRADE #12 buy 100 @ 289.87 id=7`.
    public static func textLine(_ w: WireEvent) -> String {
        let e = w.event
        let head = "\(e.eventTime.iso8601) \(w.subject) #\(e.seq)"
        switch e.kind {
        case .trade:
            let t = e.trade
            return "\(head) TRADE \(t.side) \(t.size) @ \(t.price) id=\(t.tradeID)"
        case .quote:
            let q = e.quote
            return "\(head) QUOTE \(q.bidSize) \(q.bid) x \(q.ask) \(q.askSize)"
        case .status:
            let s = e.status
            if s.category.hasNumbers {
                return "\(head) STATUS \(s.category) \(String(decoding: [s.state], as: UTF8.self)) \(Price(e8: e.b)) \(Price(e8: e.c)) \(Price(e8: e.d))"
            }
            return "\(head) STATUS \(s.category) \(String(decoding: [s.state], as: UTF8.self)) \(s.reason)"
        case .bust:
            return "\(head) BUST trade_id=\(e.bustBody.tradeID)"
        case .gap:
            let g = e.gapBody
            return "\(head) GAP \(g.first)...\(g.last) (\(g.count) lost, \(g.scope == .publisher ? "publisher" : "source"))"
        case .alert:
            let a = e.alertBody
            return "\(head) ALERT rule=\(a.rule) value=\(Price(e8: a.value)) threshold=\(Price(e8: a.threshold))"
        case .risk:
            let r = e.riskBody
            return "\(head) RISK position=\(Quantity(e8: r.position)) notional=\(Price(e8: r.notional)) pnl=\(Price(e8: r.pnl)) used=\(r.usedBasisPoints)bp"
        case .book:
            return "\(head) BOOK \(e.flags == Side.buy.rawValue ? "bid" : "ask") level \(e.c): \(Quantity(e8: e.b)) @ \(Price(e8: e.a))"
        }
    }

    public static func appendJSONString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out.append(contentsOf: "\\\"".utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: "\\\\".utf8)
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: "\\u00".utf8)
                out.append(hex[Int(b >> 4)]); out.append(hex[Int(b & 0xf)])
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
