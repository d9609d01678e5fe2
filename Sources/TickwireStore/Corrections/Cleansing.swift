import TickwireCore

extension StoreQuery {
    /// Parses a time as the command line gives it (ISO-8601 UTC or integer ns). - Throws: naming `field`.
    public static func parseTime(_ text: String, field: String) throws(StoreError) -> Nanos { try time(text, field) }
}

/// Cleansing rules: the checks a data team runs over stored history, each writing corrections (never changing
/// anything in place) whose author is the rule, so that `query versions` says which rule dropped what and why.
public enum CleansingRule: Sendable, Equatable {
    /// Deletes a TRADE whose price lies outside [bid × (1 − band), ask × (1 + band)] of the QUOTE prevailing at
    /// its event time on the same stem (`MD.XNAS.AAPL.TRADE` against `MD.XNAS.AAPL.QUOTE`). Trades with no
    /// prevailing quote, or one with a zero side, are left alone.
    case priceBand(fraction: Double)
    /// Deletes a QUOTE whose bid is at or above its ask (both sides present): the prevailing quote is then the last
    /// sound one before it.
    case crossedQuotes
    /// Fills a venue's missing session: for every symbol quoted on `reference` in the window and not at all on
    /// `venue` (an outage, a feed that never came), inserts the reference's quotes on the venue's QUOTE subject at
    /// the same event times. Trades are never made up. Once filled, the venue has quotes, so a second run asks for
    /// nothing.
    case fillSession(venue: String, reference: String)

    /// The rule as a correction's author: `rule:price-band(0.05)`, `rule:crossed-quotes`,
    /// `rule:fill-session(XNYS<-XNAS)`.
    public var author: String {
        switch self {
        case .priceBand(let f): "rule:price-band(\(f))"
        case .crossedQuotes: "rule:crossed-quotes"
        case .fillSession(let venue, let reference): "rule:fill-session(\(venue)<-\(reference))"
        }
    }

    /// The corrections the rule asks for over a query's events, as known at the query's as-of (now when nil).
    /// Events already deleted are not seen, so running a rule again asks for nothing new.
    public func requests(_ reader: StoreReader, _ q: StoreQuery) throws -> [CorrectionRequest] {
        if case .fillSession(let venue, let reference) = self { return try fill(reader, q, venue: venue, reference: reference) }
        var out = [CorrectionRequest]()
        var quotes = [Substring: (bid: Int64, ask: Int64)]()
        try reader.replay(q) { s in
            let e = s.event
            func delete(_ why: String) {
                out.append(CorrectionRequest(line: out.count + 1, subject: s.subject, eventTime: e.eventTime, knownTime: e.knownTime,
                                             tradeID: e.kind == .trade ? UInt64(bitPattern: e.c) : nil,
                                             operation: .delete, author: author, reason: why))
            }
            switch (self, e.kind) {
            case (.priceBand, .quote):
                quotes[Layout.stem(s.subject)] = (e.a, e.c)
            case (.priceBand(let f), .trade):
                guard let q = quotes[Layout.stem(s.subject)], q.bid > 0, q.ask > 0 else { return }
                let lo = Double(q.bid) * (1 - f), hi = Double(q.ask) * (1 + f)
                let p = Double(e.a)
                if p < lo || p > hi {
                    delete("price \(FixedPoint.format(e8: e.a)) outside \(f) of the prevailing quote \(FixedPoint.format(e8: q.bid)) x \(FixedPoint.format(e8: q.ask))")
                }
            case (.crossedQuotes, .quote):
                if e.a > 0, e.c > 0, e.a >= e.c {
                    delete("crossed: bid \(FixedPoint.format(e8: e.a)) >= ask \(FixedPoint.format(e8: e.c))")
                }
            default: break
            }
        }
        return out
    }

    private func fill(_ reader: StoreReader, _ q: StoreQuery, venue: String, reference: String) throws -> [CorrectionRequest] {
        let target = "MD.\(venue).", source = "MD.\(reference)."
        var quoted = Set<Substring>()                        // symbols the venue has quotes for
        var referenceQuotes = [Substring: [Event]]()         // the reference's, by symbol, in replay order
        try reader.replay(q) { s in
            guard s.event.kind == .quote else { return }
            let tokens = s.subject.split(separator: ".")
            guard tokens.count == 4 else { return }
            if s.subject.hasPrefix(target) { quoted.insert(tokens[2]) }
            else if s.subject.hasPrefix(source) { referenceQuotes[tokens[2], default: []].append(s.event) }
        }
        var out = [CorrectionRequest]()
        for symbol in referenceQuotes.keys.sorted() where !quoted.contains(symbol) {
            let events = referenceQuotes[symbol]!
            let why = "\(venue) had no quotes for \(symbol) from \(q.from.iso8601) to \(q.to.iso8601); \(events.count) filled from \(reference)"
            for e in events {
                out.append(CorrectionRequest(line: out.count + 1, subject: target + symbol + ".QUOTE", eventTime: e.eventTime,
                                             operation: .insert(.quote, ["bid": e.a, "bid_size": e.b, "ask": e.c, "ask_size": e.d]),
                                             author: author, reason: why))
            }
        }
        return out
    }
}
