import TickwireCore

/// An amount of money in the quote currency, fixed-point with 8 fractional digits: price × quantity.
@frozen public struct Notional: FixedPoint8 {
    public var e8: Int64
    @inlinable public init(e8: Int64) { self.e8 = e8 }
    /// No limit: the largest representable amount.
    public static let unlimited = Notional(e8: Int64.max)
}

/// One desk's (or trader's) pre-trade limits. A limit of `.unlimited` (`Int64.max`) is off.
public struct RiskLimits: Sendable, Equatable {
    /// The largest absolute position in any one symbol.
    public var maxPosition: Quantity
    /// The largest gross notional over all symbols: Σ |position| × mark.
    public var maxGrossNotional: Notional
    /// Credit: the largest loss, realized plus unrealized; P&L may not fall below `-maxLoss`.
    public var maxLoss: Notional
    /// Fat-finger: the largest quantity of one trade.
    public var maxOrderQuantity: Quantity
    /// Fat-finger: the largest notional of one trade.
    public var maxOrderNotional: Notional
    /// The largest distance, in basis points, of a trade's price from the symbol's last mark.
    public var priceCollarBps: Int64
    /// Whether a trade in a symbol with no mark yet is rejected (otherwise the collar is skipped for it).
    public var requireMark: Bool

    public init(maxPosition: Quantity, maxGrossNotional: Notional, maxLoss: Notional, maxOrderQuantity: Quantity,
                maxOrderNotional: Notional, priceCollarBps: Int64, requireMark: Bool = false) {
        self.maxPosition = maxPosition; self.maxGrossNotional = maxGrossNotional; self.maxLoss = maxLoss
        self.maxOrderQuantity = maxOrderQuantity; self.maxOrderNotional = maxOrderNotional
        self.priceCollarBps = priceCollarBps; self.requireMark = requireMark
    }

    /// The embedded daemon's limits for every desk (docs/RISK.md): a 1,000,000-share order, a $10M order, or a
    /// price 50% from the market is rejected out of the box.
    public static let embeddedDefault = RiskLimits(
        maxPosition: Quantity(e8: 500_000 * FixedPoint.scale),
        maxGrossNotional: Notional(e8: 50_000_000 * FixedPoint.scale),
        maxLoss: Notional(e8: 1_000_000 * FixedPoint.scale),
        maxOrderQuantity: Quantity(e8: 100_000 * FixedPoint.scale),
        maxOrderNotional: Notional(e8: 5_000_000 * FixedPoint.scale),
        priceCollarBps: 1_000)

    /// No limit at all (the base a config's `[risk.default]` overrides key by key is `embeddedDefault`).
    public static let unlimited = RiskLimits(
        maxPosition: Quantity(e8: Int64.max), maxGrossNotional: .unlimited, maxLoss: .unlimited,
        maxOrderQuantity: Quantity(e8: Int64.max), maxOrderNotional: .unlimited, priceCollarBps: Int64.max)
}

/// Limits per desk: `desks[name]` for a named desk, `default` for any other.
public struct RiskConfig: Sendable, Equatable {
    public var `default`: RiskLimits
    public var desks: [String: RiskLimits]

    public init(default: RiskLimits = .embeddedDefault, desks: [String: RiskLimits] = [:]) {
        self.default = `default`; self.desks = desks
    }

    /// The limits that apply to `desk`.
    public func limits(for desk: String) -> RiskLimits { desks[desk] ?? self.default }
}

/// A risk table in the config that cannot be used: names the table, the key and what is wrong.
public struct RiskConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `risk.default` or `risk.desks.<DESK>`.
    public let table: String
    public let key: String?
    public let reason: String
    public init(table: String, key: String?, reason: String) { self.table = table; self.key = key; self.reason = reason }
    public var description: String {
        "[\(table)]" + (key.map { " key '\($0)'" } ?? "") + ": " + reason
    }
}

extension RiskConfig {
    /// Every key a `[risk.default]` or `[risk.desks.<DESK>]` table takes.
    public static let keys = ["max_position", "max_gross_notional", "max_loss", "max_order_quantity",
                              "max_order_notional", "price_collar_bps", "require_mark"]

    /// Reads `[risk.default]` and `[risk.desks.<DESK>]` tables whose values are given as text (numbers as
    /// written, `"none"` for no limit). `default` overrides the embedded defaults key by key; each desk
    /// overrides the resulting default key by key.
    /// - Throws: `RiskConfigError` naming the table and key.
    public static func parse(default defaultTable: [String: String]?,
                             desks: [String: [String: String]]) throws(RiskConfigError) -> RiskConfig {
        let base = try parseLimits(defaultTable ?? [:], over: .embeddedDefault, table: "risk.default")
        var parsed: [String: RiskLimits] = [:]
        for desk in desks.keys.sorted() {
            let table = "risk.desks.\(desk)"
            guard !desk.isEmpty, desk.utf8.allSatisfy({ isTokenByte($0) }) else {
                throw RiskConfigError(table: table, key: nil,
                                      reason: "'\(desk)' is not a desk name (A-Z a-z 0-9 _ - only: it is a subject token)")
            }
            parsed[desk] = try parseLimits(desks[desk]!, over: base, table: table)
        }
        return RiskConfig(default: base, desks: parsed)
    }

    static func isTokenByte(_ b: UInt8) -> Bool {
        (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b == 0x5f || b == 0x2d
    }

    /// Reads one table of limits, taking what it leaves out from `base`.
    public static func parseLimits(_ entries: [String: String], over base: RiskLimits,
                                   table: String) throws(RiskConfigError) -> RiskLimits {
        func fail(_ key: String, _ reason: String) -> RiskConfigError { RiskConfigError(table: table, key: key, reason: reason) }
        for key in entries.keys.sorted() where !keys.contains(key) {
            throw fail(key, "unknown key; one of \(keys.joined(separator: ", "))")
        }
        /// A positive decimal amount, or `none`.
        func amount(_ key: String, _ current: Int64) throws(RiskConfigError) -> Int64 {
            guard let text = entries[key] else { return current }
            if text == "none" { return Int64.max }
            let v: Int64
            do { v = try FixedPoint.parseE8(text.replacing("_", with: "")) } catch { throw fail(key, error.description) }
            guard v > 0 else { throw fail(key, "\(text) must be positive (or \"none\" for no limit)") }
            return v
        }
        var l = base
        l.maxPosition = Quantity(e8: try amount("max_position", l.maxPosition.e8))
        l.maxGrossNotional = Notional(e8: try amount("max_gross_notional", l.maxGrossNotional.e8))
        l.maxLoss = Notional(e8: try amount("max_loss", l.maxLoss.e8))
        l.maxOrderQuantity = Quantity(e8: try amount("max_order_quantity", l.maxOrderQuantity.e8))
        l.maxOrderNotional = Notional(e8: try amount("max_order_notional", l.maxOrderNotional.e8))
        if let text = entries["price_collar_bps"] {
            if text == "none" {
                l.priceCollarBps = Int64.max
            } else {
                guard let v = Int64(text.replacing("_", with: "")), v > 0, v <= 1_000_000 else {
                    throw fail("price_collar_bps", "'\(text)' is not a whole number of basis points from 1 to 1000000 (or \"none\")")
                }
                l.priceCollarBps = v
            }
        }
        if let text = entries["require_mark"] {
            guard text == "true" || text == "false" else { throw fail("require_mark", "'\(text)' is not true or false") }
            l.requireMark = text == "true"
        }
        return l
    }
}
