import TickwireCore

/// How `tickwire tail` renders an event: `EventText`'s JSONL and text lines, except where a field's unit is not
/// a price.
///
/// ALERT words are documented as ×1e8, but `STALE_QUOTE` (rule 5) carries durations and a time: its value and
/// threshold are the quote's age and the window in milliseconds (×1e8), and its reference is the last quote's
/// event time in integer nanoseconds since the epoch (docs/ALERTS.md). Tail prints the reference as integer
/// nanoseconds in JSONL (as `event_time`) and the three as durations and a time in text, never as prices.
public enum TailText {
    /// The `STALE_QUOTE` rule code (TickwireAlerts' `AlertCode.staleQuote`; docs/ALERTS.md).
    public static let staleQuoteRule: UInt16 = 5

    public static func appendJSON(subject: String, subjectSeq: UInt64, event e: Event, to out: inout [UInt8]) {
        guard e.kind == .alert, e.alertBody.rule == staleQuoteRule else {
            EventText.appendJSON(subject: subject, subjectSeq: subjectSeq, event: e, to: &out)
            return
        }
        // The shared rendering writes `reference` as a decimal; write every other field as it does, then the
        // reference as an integer.
        var shared = [UInt8]()
        EventText.appendJSON(subject: subject, subjectSeq: subjectSeq, event: e, to: &shared)
        let marker = Array(",\"reference\":".utf8)
        guard let cut = shared.lastRange(of: marker) else { out += shared; return }
        out += shared[..<cut.lowerBound]
        out += marker
        FixedPoint.appendSigned(e.alertBody.reference, to: &out)
        out.append(UInt8(ascii: "}"))
    }

    /// A human line; a stale quote reads `ALERT STALE_QUOTE age=5200.5ms window=5000ms last_quote=2019-…Z`.
    public static func textLine(_ w: WireEvent) -> String {
        let e = w.event
        guard e.kind == .alert, e.alertBody.rule == staleQuoteRule else { return EventText.textLine(w) }
        let a = e.alertBody
        return "\(e.eventTime.iso8601) \(w.subject) #\(e.seq) ALERT rule=\(a.rule) STALE_QUOTE "
            + "age=\(FixedPoint.format(e8: a.value))ms window=\(FixedPoint.format(e8: a.threshold))ms "
            + "last_quote=\(Nanos(a.reference).iso8601)"
    }
}

fileprivate extension Array where Element == UInt8 {
    /// The range of the last occurrence of `needle`.
    func lastRange(of needle: [UInt8]) -> Range<Int>? {
        guard needle.count <= count else { return nil }
        var i = count - needle.count
        while i >= 0 {
            if self[i..<(i + needle.count)].elementsEqual(needle) { return i..<(i + needle.count) }
            i -= 1
        }
        return nil
    }
}
