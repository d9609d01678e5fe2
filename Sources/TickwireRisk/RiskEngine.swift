import TickwireCore

/// A desk's trade as risk sees it: who, what, which way, how much, at what price.
public struct RiskTrade: Sendable, Equatable {
    public var desk: String
    public var symbol: String
    public var side: Side
    public var quantity: Quantity
    public var price: Price

    public init(desk: String, symbol: String, side: Side, quantity: Quantity, price: Price) {
        self.desk = desk; self.symbol = symbol; self.side = side; self.quantity = quantity; self.price = price
    }

    /// A journaled `TRADE.<DESK>.<SYMBOL>` event (price in `a`, size in `b`, side in `flags`); nil for any
    /// other subject or kind.
    public init?(event: Event, subjectText: String) {
        let tokens = subjectText.split(separator: ".", omittingEmptySubsequences: false)
        guard event.kind == .trade, tokens.count == 3, tokens[0] == "TRADE" else { return nil }
        self.init(desk: String(tokens[1]), symbol: String(tokens[2]), side: Side(rawValue: event.flags) ?? .unknown,
                  quantity: Quantity(e8: event.b), price: Price(e8: event.a))
    }
}

/// The limit a rejected trade would have breached. The raw value is the config key (and the metrics label).
public enum RiskLimit: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Not a trade risk can price: quantity or price not above zero, or no side.
    case invalidTrade = "invalid_trade"
    case maxOrderQuantity = "max_order_quantity"
    case maxOrderNotional = "max_order_notional"
    case priceCollar = "price_collar_bps"
    case requireMark = "require_mark"
    case maxPosition = "max_position"
    case maxGrossNotional = "max_gross_notional"
    case maxLoss = "max_loss"
    public var description: String { rawValue }
}

/// Why a trade was rejected: the limit, the desk and symbol, the value the trade would reach and the limit,
/// both e8 (quantity, notional, or basis points for the collar).
public struct RiskRejection: Error, Sendable, Equatable, CustomStringConvertible {
    public let limit: RiskLimit
    public let desk: String
    public let symbol: String
    public let valueE8: Int64
    public let limitE8: Int64

    public init(limit: RiskLimit, desk: String, symbol: String, valueE8: Int64, limitE8: Int64) {
        self.limit = limit; self.desk = desk; self.symbol = symbol; self.valueE8 = valueE8; self.limitE8 = limitE8
    }

    public var description: String {
        let v = FixedPoint.format(e8: valueE8), l = FixedPoint.format(e8: limitE8)
        switch limit {
        case .invalidTrade:
            return "desk \(desk): trade in \(symbol) is invalid (quantity and price must be above zero, side buy or sell)"
        case .maxOrderQuantity:
            return "desk \(desk): order quantity \(v) \(symbol) exceeds max_order_quantity \(l)"
        case .maxOrderNotional:
            return "desk \(desk): order notional \(v) in \(symbol) exceeds max_order_notional \(l)"
        case .priceCollar:
            return "desk \(desk): price is \(v) bps from the \(symbol) market, beyond price_collar_bps \(l)"
        case .requireMark:
            return "desk \(desk): no market price for \(symbol) yet, and require_mark is on"
        case .maxPosition:
            return "desk \(desk): position in \(symbol) would be \(v), beyond max_position \(l)"
        case .maxGrossNotional:
            return "desk \(desk): gross notional would be \(v) (after \(symbol)), beyond max_gross_notional \(l)"
        case .maxLoss:
            return "desk \(desk): P&L would be -\(v) (after \(symbol)), beyond max_loss \(l)"
        }
    }
}

/// One desk's position in one symbol, as `RiskEngine.positions(desk:)` reports it.
public struct RiskPosition: Sendable, Equatable {
    public var symbol: String
    public var quantity: Quantity
    /// The average price of the open position (0 when flat).
    public var averageCost: Price
    public var realized: Notional
    public var unrealized: Notional
    /// The price the position is valued at: the symbol's mark, or the desk's last trade price without one.
    public var valuation: Price

    public init(symbol: String, quantity: Quantity, averageCost: Price, realized: Notional, unrealized: Notional, valuation: Price) {
        self.symbol = symbol; self.quantity = quantity; self.averageCost = averageCost
        self.realized = realized; self.unrealized = unrealized; self.valuation = valuation
    }
}

/// Pre-trade risk: limits per desk, positions and P&L per desk and symbol, marked to the market.
///
/// Threads: `check`, `submit`, `apply` and `rebuild` come from the trade service's thread, `usage` and
/// `positions` from any thread; they share one lock, which is never on the market-data path. Marks come
/// from a `RiskMarker` on a ring consumer thread (or `mark(symbol:price:)`) and reach the checks through
/// per-symbol atomics, so market data never waits for a trade and the reverse.
///
/// Numbers are exact: positions are e8, cost and P&L are kept in e16 (price e8 × quantity e8) in 128 bits,
/// and reported in e8, truncated toward zero.
public final class RiskEngine: Sendable {
    public let config: RiskConfig
    let board: MarkBoard
    private let book = Locked(Book())

    struct Position {
        var quantity: Int64 = 0
        /// Σ signed quantity × price of the open position, e16; the sign of `quantity`.
        var cost: Int128 = 0
        var realized: Int128 = 0
        var lastPrice: Int64 = 0
        var markSlot: Int32 = -1
    }

    /// The positions, by desk and then symbol. A trade finds its desk and its symbol once, and the check and the
    /// apply that follow work on that desk in place (`decide`): two string lookups a trade and no copy of a desk,
    /// under the lock every check takes.
    struct Book {
        var desks: [String: Desk] = [:]
        /// Rejections by limit, counted under the lock the check already holds.
        var rejected: [RiskLimit: UInt64] = [:]
    }

    /// One desk's positions, in the order its symbols first traded, and its limits (looked up once).
    struct Desk {
        let limits: RiskLimits
        /// Symbol → index in `symbols` and `positions`.
        var slots: [String: Int] = [:]
        var symbols: [String] = []
        var positions: [Position] = []

        init(limits: RiskLimits) { self.limits = limits }

        /// The position in `symbol`, made (flat) if there is none.
        mutating func slot(_ symbol: String, board: MarkBoard) -> Int {
            if let i = slots[symbol] { return i }
            var p = Position()
            p.markSlot = board.slot(symbol)
            slots[symbol] = positions.count
            symbols.append(symbol)
            positions.append(p)
            return positions.count - 1
        }

        /// Sets the position in `symbol` (a checkpoint's), keeping its mark slot.
        mutating func restore(_ symbol: String, _ position: Position, board: MarkBoard) {
            let i = slot(symbol, board: board)
            positions[i] = Position(quantity: position.quantity, cost: position.cost, realized: position.realized,
                                    lastPrice: position.lastPrice, markSlot: positions[i].markSlot)
        }

        /// The positions by symbol, sorted by symbol.
        var sorted: [(symbol: String, position: Position)] {
            zip(symbols, positions).sorted { $0.0 < $1.0 }.map { ($0.0, $0.1) }
        }
    }

    /// - Parameters:
    ///   - config: the limits per desk.
    ///   - maxSymbols: how many symbols can be marked; marks of later symbols are dropped (and counted).
    public init(config: RiskConfig = RiskConfig(), maxSymbols: Int = 65_536) {
        self.config = config
        board = MarkBoard(capacity: maxSymbols)
    }

    /// A marker for one market-data consumer thread, resolving subjects in `subjects`.
    public func makeMarker(subjects: SubjectTable) -> RiskMarker { RiskMarker(board: board, subjects: subjects) }

    /// Marks `symbol` at `price` (a TRADE price or a QUOTE mid). Takes a lock: use a `RiskMarker` on the stream.
    public func mark(symbol: String, price: Price) {
        let slot = board.slot(symbol)
        if slot >= 0 { board.store(slot, price.e8) }
    }

    /// The last mark of `symbol`, if any.
    public func markPrice(symbol: String) -> Price? {
        let p = board.load(board.existingSlot(symbol))
        return p == 0 ? nil : Price(e8: p)
    }

    /// How many trades were rejected for `limit` (by `check` or `submit`) since start.
    public func rejected(_ limit: RiskLimit) -> UInt64 {
        book.withLock { $0.rejected[limit, default: 0] }
    }

    /// Marks whose symbol found no slot (more than `maxSymbols` symbols).
    public var droppedMarkSymbols: UInt64 { board.overflowed.load(ordering: .relaxed) }

    // MARK: - Checks

    /// Whether `desk` may trade: nil when every limit holds, else the first limit the trade would breach, in
    /// the order invalid, order quantity, order notional, require mark, price collar, position, gross notional,
    /// loss. Changes nothing (but the rejection counters).
    public func check(desk: String, symbol: String, side: Side, quantity: Quantity, price: Price) -> RiskRejection? {
        check(RiskTrade(desk: desk, symbol: symbol, side: side, quantity: quantity, price: price))
    }

    public func check(_ trade: RiskTrade) -> RiskRejection? {
        book.withLock { decide(trade, &$0, .all, apply: false).rejection }
    }

    /// Checks and, when every limit holds, applies the trade, under one lock: two trades checked back to back
    /// cannot both pass on the same headroom. The trade service calls this before journaling.
    public func submit(_ trade: RiskTrade) -> RiskRejection? {
        book.withLock { decide(trade, &$0, .all, apply: true).rejection }
    }

    /// The first limit the trade breaches that depends on the trade and the live market only (see `Phase.market`),
    /// and the mark it was judged at (0: none). Changes nothing (but the rejection counters). With replicated
    /// trades, the daemon that takes a submission calls this, and the mark travels with the request in the log.
    public func checkMarket(_ trade: RiskTrade) -> (rejection: RiskRejection?, markE8: Int64) {
        book.withLock { book in
            let (r, markSlot) = decide(trade, &book, .market, apply: false)
            return (r, board.load(markSlot))
        }
    }

    /// Checks the limits that depend on the positions (see `Phase.sequenced`) at the logged `markE8` and, when
    /// they hold, applies the trade, under one lock. Deterministic: it reads nothing of the live market, so
    /// replicas applying one log in its order decide alike.
    public func submitSequenced(_ trade: RiskTrade, markE8: Int64) -> RiskRejection? {
        book.withLock { decide(trade, &$0, .sequenced(mark: markE8), apply: true).rejection }
    }

    /// Applies a trade to positions, average cost and realized P&L, unchecked (a journaled trade was checked
    /// when submitted). A trade risk cannot price (quantity or price not above zero, no side) changes nothing.
    public func apply(_ trade: RiskTrade) { book.withLock { apply(trade, to: &$0) } }

    /// Forgets every position and applies `trades` in order: a restart replays the journal. Marks are kept.
    public func rebuild(from trades: some Sequence<RiskTrade>) { rebuild(snapshot: nil, then: trades) }

    /// Forgets every position, takes those of `snapshot` (if any), then applies `trades` in order: a restart
    /// replays the journal from its last checkpoint. Marks are kept.
    public func rebuild(snapshot: Snapshot?, then trades: some Sequence<RiskTrade>) {
        book.withLock { book in
            book.desks = [:]
            for e in snapshot?.entries ?? [] {
                book.desks[e.desk, default: Desk(limits: config.limits(for: e.desk))]
                    .restore(e.symbol, Position(quantity: e.quantity, cost: e.cost, realized: e.realized, lastPrice: e.lastPrice), board: board)
            }
            for t in trades { apply(t, to: &book) }
        }
    }

    /// Every position as a value to keep (a checkpoint of what the journal built) and give back to `rebuild`.
    public func snapshot() -> Snapshot {
        book.withLock { book in
            var entries: [Snapshot.Entry] = []
            for (desk, positions) in book.desks.sorted(by: { $0.key < $1.key }) {
                for (symbol, p) in positions.sorted {
                    entries.append(.init(desk: desk, symbol: symbol, quantity: p.quantity, cost: p.cost,
                                         realized: p.realized, lastPrice: p.lastPrice))
                }
            }
            return Snapshot(entries: entries)
        }
    }

    /// The positions at one moment, exactly (the 128-bit cost and P&L included), and their byte form.
    public struct Snapshot: Sendable, Equatable {
        public struct Entry: Sendable, Equatable {
            public var desk: String, symbol: String
            public var quantity: Int64, cost: Int128, realized: Int128, lastPrice: Int64
        }
        public var entries: [Entry]

        /// Per entry: desk and symbol (u8 length, UTF-8), quantity e8, cost and realized e16 (low then high
        /// 64 bits), last price e8; little-endian. The caller frames and checksums it.
        public var bytes: [UInt8] {
            var out: [UInt8] = []
            func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
            func put(_ s: String) { let u = Array(s.utf8.prefix(255)); out.append(UInt8(u.count)); out.append(contentsOf: u) }
            put(UInt32(entries.count))
            for e in entries {
                put(e.desk); put(e.symbol); put(e.quantity)
                put(UInt64(truncatingIfNeeded: e.cost)); put(Int64(truncatingIfNeeded: e.cost >> 64))
                put(UInt64(truncatingIfNeeded: e.realized)); put(Int64(truncatingIfNeeded: e.realized >> 64))
                put(e.lastPrice)
            }
            return out
        }

        public init(entries: [Entry]) { self.entries = entries }

        /// Decodes `bytes`; nil when they are not a whole snapshot.
        public init?(bytes: [UInt8]) {
            var at = 0
            func take<T: FixedWidthInteger>(_: T.Type) -> T? {
                guard at + MemoryLayout<T>.size <= bytes.count else { return nil }
                defer { at += MemoryLayout<T>.size }
                return bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: T.self)) }
            }
            func text() -> String? {
                guard at < bytes.count, at + 1 + Int(bytes[at]) <= bytes.count else { return nil }
                defer { at += 1 + Int(bytes[at]) }
                return String(decoding: bytes[at + 1..<at + 1 + Int(bytes[at])], as: UTF8.self)
            }
            guard let n = take(UInt32.self) else { return nil }
            var entries: [Entry] = []
            for _ in 0..<n {
                guard let desk = text(), let symbol = text(), let q = take(Int64.self),
                      let cl = take(UInt64.self), let ch = take(Int64.self), let rl = take(UInt64.self), let rh = take(Int64.self),
                      let last = take(Int64.self) else { return nil }
                entries.append(Entry(desk: desk, symbol: symbol, quantity: q, cost: Int128(ch) << 64 | Int128(cl),
                                     realized: Int128(rh) << 64 | Int128(rl), lastPrice: last))
            }
            guard at == bytes.count else { return nil }
            self.entries = entries
        }
    }

    /// Which limits an evaluation checks, and where its marks come from.
    enum Phase {
        /// Every limit, at the live marks (the single-daemon trade service).
        case all
        /// The limits that depend on the trade and the live market only (invalid, order quantity and notional,
        /// require mark, price collar); nothing of the positions.
        case market
        /// The limits that depend on the positions (position, gross notional, loss), at marks a sequenced log
        /// carries: `mark` for the traded symbol (0: none), each other position at its last trade price. The same
        /// log gives the same decisions on every replica, whatever their live market data.
        case sequenced(mark: Int64)
    }

    /// Checks `t` against its desk's limits in `phase` and, when `apply` and they hold, applies it; counts a
    /// rejection. The desk is found once and worked on in place. Returns the slot of the symbol's mark too.
    private func decide(_ t: RiskTrade, _ book: inout Book, _ phase: Phase, apply: Bool) -> (rejection: RiskRejection?, markSlot: Int32) {
        let decided = withDesk(t.desk, in: &book) { desk -> (rejection: RiskRejection?, markSlot: Int32) in
            let slot = desk.slots[t.symbol]
            let own = slot.map { desk.positions[$0].markSlot } ?? -1
            let markSlot = own >= 0 ? own : board.existingSlot(t.symbol)
            if let r = evaluate(t, desk, slot: slot, markSlot: markSlot, phase) { return (r, markSlot) }
            if apply { fill(t, &desk, slot) }
            return (nil, markSlot)
        }
        if let r = decided.rejection { book.rejected[r.limit, default: 0] += 1 }
        return decided
    }

    /// Runs `body` on desk `name` in place (through the dictionary's storage, no copy). A desk not yet in the book
    /// is made with its limits and kept only if `body` gave it a position. Inlined: called with its closure, it
    /// added ~17 ns to each trade's check (the Risk.submit package benchmarks).
    @inline(__always)
    private func withDesk<T>(_ name: String, in book: inout Book, _ body: (inout Desk) -> T) -> T {
        if let d = book.desks.index(forKey: name) { return body(&book.desks.values[d]) }
        var desk = Desk(limits: config.limits(for: name))
        let result = body(&desk)
        if !desk.positions.isEmpty { book.desks[name] = desk }
        return result
    }

    /// The first limit of `desk` that `t` breaches in `phase`, its symbol's position at `slot` and mark at `markSlot`.
    private func evaluate(_ t: RiskTrade, _ desk: Desk, slot: Int?, markSlot: Int32, _ phase: Phase) -> RiskRejection? {
        let limits = desk.limits
        func reject(_ limit: RiskLimit, _ value: Int128, _ bound: Int64) -> RiskRejection {
            RiskRejection(limit: limit, desk: t.desk, symbol: t.symbol, valueE8: clamp(value), limitE8: bound)
        }
        let q = t.quantity.e8, p = t.price.e8
        guard q > 0, p > 0, t.side != .unknown else { return reject(.invalidTrade, 0, 0) }
        var position = slot.map { desk.positions[$0] } ?? Position()
        let mark: Int64
        if case .sequenced(let logged) = phase {
            mark = logged
        } else {
            if q > limits.maxOrderQuantity.e8 { return reject(.maxOrderQuantity, Int128(q), limits.maxOrderQuantity.e8) }
            let orderNotional = Int128(q) * Int128(p) / e8
            if orderNotional > Int128(limits.maxOrderNotional.e8) {
                return reject(.maxOrderNotional, orderNotional, limits.maxOrderNotional.e8)
            }
            mark = board.load(markSlot)
            if mark == 0 {
                if limits.requireMark { return reject(.requireMark, 0, 0) }
            } else if limits.priceCollarBps != Int64.max {
                let distance = Int128(abs(p - mark)) * 10_000
                if distance > Int128(limits.priceCollarBps) * Int128(mark) {
                    return reject(.priceCollar, distance * e8 / Int128(mark), limits.priceCollarBps &* FixedPoint.scale)
                }
            }
            if case .market = phase { return nil }
        }
        let before = position
        Self.fill(&position, signed: t.side == .buy ? q : -q, price: p)
        let increases = position.quantity.magnitude > before.quantity.magnitude
        if increases && Int128(position.quantity.magnitude) > Int128(limits.maxPosition.e8) {
            return reject(.maxPosition, Int128(position.quantity.magnitude), limits.maxPosition.e8)
        }
        // The desk-wide limits look at every position of the desk: skipped when both are off.
        guard limits.maxGrossNotional.e8 != Int64.max || limits.maxLoss.e8 != Int64.max else { return nil }
        let live: Bool
        if case .all = phase { live = true } else { live = false }

        // Gross notional and P&L of the whole desk, before and after, with this symbol valued at its mark or,
        // lacking one, at this trade's price.
        var grossBefore: Int128 = 0, grossAfter: Int128 = 0, pnlAfter: Int128 = 0
        for (i, other) in desk.positions.enumerated() where i != slot {
            let value = live ? valuation(other) : other.lastPrice
            let g = Int128(other.quantity.magnitude) * Int128(value)
            grossBefore += g; grossAfter += g
            pnlAfter += other.realized + Int128(other.quantity) * Int128(value) - other.cost
        }
        let value = mark != 0 ? mark : p
        grossBefore += Int128(before.quantity.magnitude) * Int128(mark != 0 ? mark : before.lastPrice)
        grossAfter += Int128(position.quantity.magnitude) * Int128(value)
        pnlAfter += position.realized + Int128(position.quantity) * Int128(value) - position.cost
        if grossAfter > grossBefore && grossAfter / e8 > Int128(limits.maxGrossNotional.e8) {
            return reject(.maxGrossNotional, grossAfter / e8, limits.maxGrossNotional.e8)
        }
        if increases && -pnlAfter / e8 > Int128(limits.maxLoss.e8) {
            return reject(.maxLoss, -pnlAfter / e8, limits.maxLoss.e8)
        }
        return nil
    }

    /// Applies `t` unchecked (a trade risk cannot price changes nothing).
    private func apply(_ t: RiskTrade, to book: inout Book) {
        withDesk(t.desk, in: &book) { desk in
            let slot = desk.slots[t.symbol]
            fill(t, &desk, slot)
        }
    }

    /// Fills `t` into `desk`'s position in its symbol (at `slot`, or a new one); a trade risk cannot price changes
    /// nothing.
    private func fill(_ t: RiskTrade, _ desk: inout Desk, _ slot: Int?) {
        guard t.quantity.e8 > 0, t.price.e8 > 0, t.side != .unknown else { return }
        let i = slot ?? desk.slot(t.symbol, board: board)
        Self.fill(&desk.positions[i], signed: t.side == .buy ? t.quantity.e8 : -t.quantity.e8, price: t.price.e8)
    }

    /// Fills `signed` (buy positive) at `price` into a position: closes against the open quantity first at its
    /// average cost, realizing the difference, then opens any remainder at `price`.
    static func fill(_ position: inout Position, signed: Int64, price: Int64) {
        position.lastPrice = price
        if position.quantity == 0 || (position.quantity > 0) == (signed > 0) {
            position.quantity += signed
            position.cost += Int128(signed) * Int128(price)
            return
        }
        let open = Int128(position.quantity.magnitude)
        let closing = min(Int128(signed.magnitude), open)
        let sign: Int128 = position.quantity > 0 ? 1 : -1
        // The closed part's share of the cost; exact when the whole position closes.
        let removed = closing == open ? position.cost : position.cost * closing / open
        position.realized += sign * closing * Int128(price) - removed
        position.cost -= removed
        position.quantity -= Int64(sign * closing)
        let remainder = Int128(signed.magnitude) - closing
        if remainder > 0 {
            position.quantity += Int64(-sign * remainder)
            position.cost += -sign * remainder * Int128(price)
        }
    }

    private func valuation(_ p: Position) -> Int64 {
        let mark = board.load(p.markSlot)
        return mark != 0 ? mark : p.lastPrice
    }

    // MARK: - Reading

    /// The desks holding or having held positions, sorted.
    public var desks: [String] { book.withLock { $0.desks.keys.sorted() } }

    /// A desk's limit use: the largest absolute position of any symbol (signed), gross notional, P&L (realized +
    /// unrealized), all e8, and the tightest of its position, gross-notional and loss limits in use, in basis
    /// points of that limit (10000 = at the limit).
    public func usage(desk: String) -> RiskUse {
        let limits = config.limits(for: desk)
        return book.withLock { book in
            var largest: Int64 = 0, gross: Int128 = 0, pnl: Int128 = 0
            for p in book.desks[desk]?.positions ?? [] {
                if p.quantity.magnitude > largest.magnitude { largest = p.quantity }
                let value = valuation(p)
                gross += Int128(p.quantity.magnitude) * Int128(value)
                pnl += p.realized + Int128(p.quantity) * Int128(value) - p.cost
            }
            gross /= e8; pnl /= e8
            func used(_ v: Int128, _ limit: Int64) -> Int128 { limit == Int64.max ? 0 : v * 10_000 / Int128(limit) }
            let bp = max(used(Int128(largest.magnitude), limits.maxPosition.e8),
                         used(gross, limits.maxGrossNotional.e8),
                         pnl < 0 ? used(-pnl, limits.maxLoss.e8) : 0)
            return RiskUse(position: largest, notional: clamp(gross), pnl: clamp(pnl), usedBasisPoints: clamp(bp))
        }
    }

    /// A desk's positions by symbol, sorted by symbol.
    public func positions(desk: String) -> [RiskPosition] {
        book.withLock { book in
            (book.desks[desk]?.sorted ?? []).map { symbol, p in
                let value = valuation(p)
                let average = p.quantity == 0 ? 0 : p.cost / Int128(p.quantity)
                return RiskPosition(symbol: symbol, quantity: Quantity(e8: p.quantity), averageCost: Price(e8: clamp(average)),
                                    realized: Notional(e8: clamp(p.realized / e8)),
                                    unrealized: Notional(e8: clamp((Int128(p.quantity) * Int128(value) - p.cost) / e8)),
                                    valuation: Price(e8: value))
            }
        }
    }
}

private let e8 = Int128(FixedPoint.scale)

private func clamp(_ v: Int128) -> Int64 {
    v > Int128(Int64.max) ? Int64.max : v < Int128(Int64.min) ? Int64.min : Int64(v)
}
