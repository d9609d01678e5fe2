import TickwireCore

/// The state behind the ticker: one row per venue and symbol, updated from events, rendered at a steady rate.
public struct TickerModel: Sendable {
    public struct Row: Sendable, Equatable {
        public var venue: String
        public var symbol: String
        public var last: Price? = nil
        /// The first trade price seen: the reference for change.
        public var reference: Price? = nil
        public var bid: Price? = nil
        public var bidSize: Quantity = .zero
        public var ask: Price? = nil
        public var askSize: Quantity = .zero
        public var volume: Quantity = .zero
        public var status: String = ""
        /// The book is not known to be right (a STATUS of category `book`, state `S`, until one with `C`):
        /// its quote is the last one known, shown as stale.
        public var stale = false
        /// +1 last move up, -1 down; shown as a flash until `flashUntil`.
        public var flashDirection: Int = 0
        public var flashUntil: Nanos = .zero
        public var updatesThisSecond: Int = 0
        public var updatesPerSecond: Int = 0
        public var windowStart: Nanos = .zero

        public var change: Int64? {
            guard let l = last, let r = reference else { return nil }
            return l.e8 - r.e8
        }
    }

    public private(set) var rows: [String: Row] = [:]
    public private(set) var order: [String] = []
    public private(set) var events: UInt64 = 0
    public private(set) var gaps: UInt64 = 0
    public private(set) var lost: UInt64 = 0
    public private(set) var lastAlert: String = ""
    public private(set) var lastRisk: String = ""
    /// Rows whose book is stale now.
    public var staleRows: Int { rows.values.reduce(0) { $0 + ($1.stale ? 1 : 0) } }
    public var endpoint: String
    /// How long a tick's flash lasts.
    public var flashNanos: Int64 = 300_000_000

    public init(endpoint: String) { self.endpoint = endpoint }

    /// Applies one delivery at wall time `now`.
    public mutating func apply(_ d: Delivery, now: Nanos) {
        switch d {
        case .gap(_, let first, let last):
            gaps += 1
            lost += last - first + 1
        case .event(let w) where w.event.kind == .gap && w.subject.hasPrefix(Subscriber.gapNoticePrefix):
            // The daemon could not send these to NATS (docs/PROTOCOL.md, "NATS"): counted like a gap seen here.
            gaps += 1
            lost += w.event.gapBody.count
        case .event(let w):
            events += 1
            apply(w, now: now)
        }
    }

    private mutating func apply(_ w: WireEvent, now: Nanos) {
        let tokens = w.subject.split(separator: ".")
        switch tokens.first {
        case "MD" where tokens.count >= 4:
            let key = "\(tokens[2]).\(tokens[1])"
            if rows[key] == nil {
                rows[key] = Row(venue: String(tokens[1]), symbol: String(tokens[2]), windowStart: now)
                order.append(key)
                order.sort()
            }
            var row = rows[key]!
            let e = w.event
            switch e.kind {
            case .trade:
                let t = e.trade
                if let l = row.last, t.price != l { flash(&row, up: t.price > l, now: now) }
                row.last = t.price
                if row.reference == nil { row.reference = t.price }
                row.volume = Quantity(e8: row.volume.e8 &+ t.size.e8)
            case .quote:
                let q = e.quote
                if let b = row.bid, q.bid != b { flash(&row, up: q.bid > b, now: now) }
                row.bid = q.bid; row.bidSize = q.bidSize; row.ask = q.ask; row.askSize = q.askSize
            case .status:
                let s = e.status
                // Book integrity is its own flag: it must not overwrite the trading state.
                // The desk's reference data (directory, imbalance, …) is not a trading state either.
                switch s.category {
                case .book: row.stale = s.isStale
                case .system, .trading, .shortSale, .circuitBreaker, .ipo, .other: row.status = String(decoding: [s.state], as: UTF8.self)
                default: break
                }
            case .bust:
                row.volume = Quantity(e8: row.volume.e8 &- e.bustBody.size.e8)
            default:
                break
            }
            if now.rawValue - row.windowStart.rawValue >= Nanos.perSecond {
                row.updatesPerSecond = row.updatesThisSecond
                row.updatesThisSecond = 0
                row.windowStart = now
            }
            row.updatesThisSecond += 1
            rows[key] = row
        case "ALERT":
            lastAlert = "\(w.subject) \(EventText.textLine(w).split(separator: " ").dropFirst(3).joined(separator: " "))"
        case "RISK":
            let r = w.event.riskBody
            lastRisk = "\(w.subject) used \(r.usedBasisPoints / 100)% pnl \(Price(e8: r.pnl))"
        default:
            break
        }
    }

    private func flash(_ row: inout Row, up: Bool, now: Nanos) {
        row.flashDirection = up ? 1 : -1
        row.flashUntil = Nanos(now.rawValue + flashNanos)
    }

    /// Ages per-second rates for rows that have gone quiet.
    public mutating func tick(now: Nanos) {
        for key in order {
            guard var row = rows[key], now.rawValue - row.windowStart.rawValue >= Nanos.perSecond else { continue }
            let windows = (now.rawValue - row.windowStart.rawValue) / Nanos.perSecond
            row.updatesPerSecond = windows == 1 ? row.updatesThisSecond : 0
            row.updatesThisSecond = 0
            row.windowStart = now
            rows[key] = row
        }
    }
}
