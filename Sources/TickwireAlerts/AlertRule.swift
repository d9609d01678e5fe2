import TickwireCore

/// The rule an alert came from: the `a` word of an ALERT event and the second token of its subject.
public enum AlertCode: UInt16, Sendable, CaseIterable, CustomStringConvertible {
    case priceJump = 1
    case crossed = 2
    case locked = 3
    case volumeSpike = 4
    case staleQuote = 5
    case tradeOutsideQuote = 6

    /// The subject token: `ALERT.<name>.<SYMBOL>`.
    public var name: String {
        switch self {
        case .priceJump: "PRICE_JUMP"
        case .crossed: "CROSSED"
        case .locked: "LOCKED"
        case .volumeSpike: "VOLUME_SPIKE"
        case .staleQuote: "STALE_QUOTE"
        case .tradeOutsideQuote: "TRADE_OUTSIDE_QUOTE"
        }
    }

    public var description: String { name }
}

/// One complex-event rule: what it detects, with its parameters, on which market-data subjects, and how
/// often it may fire per subject.
///
/// Durations are integer nanoseconds; prices, quantities and factors are e8 fixed point; basis points are
/// integers (1 bp = 0.01%). docs/ALERTS.md describes each rule, its alert words and its defaults.
public struct AlertRule: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// A TRADE price at least `bps` basis points above the lowest, or below the highest, trade price of the
        /// same subject in the last `windowNanos` of event time.
        case priceJump(bps: Int64, windowNanos: Int64)
        /// A QUOTE with bid > ask (CROSSED) or bid == ask (LOCKED, when `alertOnLocked`), on entering that state.
        case crossedMarket(alertOnLocked: Bool)
        /// The volume traded in the current `bucketNanos` bucket reaching `factorE8`/1e8 times the mean of the
        /// previous `lookbackBuckets` buckets, once at least `minBuckets` of them exist.
        case volumeSpike(bucketNanos: Int64, factorE8: Int64, minBuckets: Int, lookbackBuckets: Int)
        /// No QUOTE on a subject for more than `windowNanos` of known time (checked by `AlertEngine.tick`).
        case staleQuote(windowNanos: Int64)
        /// A TRADE priced below the bid or above the ask of the latest QUOTE of the same venue and symbol,
        /// by more than `toleranceBps`.
        case tradeOutsideQuote(toleranceBps: Int64)

        /// The config name (`rule = "…"`).
        public var name: String {
            switch self {
            case .priceJump: "price_jump"
            case .crossedMarket: "crossed_market"
            case .volumeSpike: "volume_spike"
            case .staleQuote: "stale_quote"
            case .tradeOutsideQuote: "trade_outside_quote"
            }
        }

        /// The market-data kind whose subjects `subjects` names (`trade_outside_quote` also reads the QUOTE of
        /// the same venue and symbol).
        public var reads: EventKind {
            switch self {
            case .priceJump, .volumeSpike, .tradeOutsideQuote: .trade
            case .crossedMarket, .staleQuote: .quote
            }
        }
    }

    public var kind: Kind
    /// The market-data subjects (`MD.<VENUE>.<SYMBOL>.<KIND>`) the rule reads.
    public var subjects: SubjectPattern
    /// After an alert on a subject, further alerts of the same rule and code on that subject within this many
    /// nanoseconds (event time; `tick`'s clock for stale quotes) are suppressed and counted.
    public var cooldownNanos: Int64

    public init(_ kind: Kind, subjects: SubjectPattern, cooldownNanos: Int64 = AlertRule.defaultCooldownNanos) {
        precondition(cooldownNanos >= 0, "a cooldown is never negative")
        self.kind = kind; self.subjects = subjects; self.cooldownNanos = cooldownNanos
    }

    public var description: String { "\(kind.name) on \(subjects)" }

    public static let defaultCooldownNanos: Int64 = 1_000 * nanosPerMilli
    static let nanosPerMilli: Int64 = 1_000_000

    /// The rules the embedded daemon runs when its config names none: every rule on every market-data subject,
    /// with the defaults of docs/ALERTS.md.
    public static let defaults: [AlertRule] = {
        let trades = try! SubjectPattern("MD.*.*.TRADE"), quotes = try! SubjectPattern("MD.*.*.QUOTE")
        return [
            AlertRule(.priceJump(bps: 100, windowNanos: 1_000 * nanosPerMilli), subjects: trades),
            AlertRule(.crossedMarket(alertOnLocked: true), subjects: quotes),
            AlertRule(.volumeSpike(bucketNanos: 1_000 * nanosPerMilli, factorE8: 5 * FixedPoint.scale,
                                   minBuckets: 10, lookbackBuckets: 60), subjects: trades),
            AlertRule(.staleQuote(windowNanos: 5_000 * nanosPerMilli), subjects: quotes),
            AlertRule(.tradeOutsideQuote(toleranceBps: 0), subjects: trades),
        ]
    }()
}

/// A rule in the config that cannot be used: names the entry (its index in `[[alerts]]` and its rule), the
/// key, and what is wrong.
public struct AlertConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The entry's 0-based position in the `[[alerts]]` array.
    public let index: Int
    /// The entry's `rule`, when it has one.
    public let rule: String?
    /// The key at fault, when one is.
    public let key: String?
    public let reason: String

    public init(index: Int, rule: String?, key: String?, reason: String) {
        self.index = index; self.rule = rule; self.key = key; self.reason = reason
    }

    public var description: String {
        var s = "alerts[\(index)]"
        if let rule { s += " (rule '\(rule)')" }
        if let key { s += ", key '\(key)'" }
        return s + ": " + reason
    }
}

extension AlertRule {
    /// Every `rule` name the config accepts.
    public static let ruleNames = ["price_jump", "crossed_market", "volume_spike", "stale_quote", "trade_outside_quote"]

    /// Reads every `[[alerts]]` entry, in order.
    /// - Throws: `AlertConfigError` for the first bad entry.
    public static func parseAll(_ entries: [[String: String]]) throws(AlertConfigError) -> [AlertRule] {
        var rules: [AlertRule] = []
        for (i, entry) in entries.enumerated() { rules.append(try parse(entry, index: i)) }
        return rules
    }

    /// Reads one `[[alerts]]` entry whose values are given as text (TOML strings unquoted, numbers and booleans
    /// as written): `rule = "price_jump"`, `subjects = "MD.*.*.TRADE"`, `bps = 50`, `window_ms = 500` …
    ///
    /// `rule`, `subjects` and the rule's defining parameters are required; the others have the defaults of
    /// docs/ALERTS.md. A key the rule does not take is an error, so a typo is never silently ignored.
    /// - Parameters:
    ///   - entry: the entry's keys and values.
    ///   - index: the entry's position in the config, for error messages.
    /// - Throws: `AlertConfigError` naming the entry, the key and the problem.
    public static func parse(_ entry: [String: String], index: Int) throws(AlertConfigError) -> AlertRule {
        guard let rule = entry["rule"] else {
            throw AlertConfigError(index: index, rule: nil, key: "rule",
                                   reason: "missing; one of \(ruleNames.joined(separator: ", "))")
        }
        func fail(_ key: String?, _ reason: String) -> AlertConfigError {
            AlertConfigError(index: index, rule: rule, key: key, reason: reason)
        }
        let params: [String]
        switch rule {
        case "price_jump": params = ["bps", "window_ms"]
        case "crossed_market": params = ["locked"]
        case "volume_spike": params = ["bucket_ms", "factor", "min_buckets", "lookback_buckets"]
        case "stale_quote": params = ["window_ms"]
        case "trade_outside_quote": params = ["tolerance_bps"]
        default: throw fail("rule", "unknown rule; one of \(ruleNames.joined(separator: ", "))")
        }
        let allowed = Set(["rule", "subjects", "cooldown_ms"] + params)
        for key in entry.keys.sorted() where !allowed.contains(key) {
            throw fail(key, "unknown parameter; \(rule) takes \((["subjects", "cooldown_ms"] + params).joined(separator: ", "))")
        }

        func text(_ key: String, default value: String?) throws(AlertConfigError) -> String {
            if let text = entry[key] { return text }
            if let value { return value }
            throw fail(key, "missing; \(rule) needs it (docs/ALERTS.md)")
        }
        func integer(_ key: String, default value: Int64?, min lo: Int64, max hi: Int64 = Int64.max) throws(AlertConfigError) -> Int64 {
            let text = try text(key, default: value.map { String($0) })
            let cleaned = text.replacing("_", with: "")
            guard let v = Int64(cleaned) else { throw fail(key, "'\(text)' is not an integer") }
            guard v >= lo && v <= hi else {
                throw fail(key, "\(v) is out of range; it must be \(hi == Int64.max ? "at least \(lo)" : "between \(lo) and \(hi)")")
            }
            return v
        }
        func millis(_ key: String, default ms: Int64?, min lo: Int64 = 1) throws(AlertConfigError) -> Int64 {
            // Capped at a day: longer windows are a typo, and the cap keeps ms -> ns far from overflow.
            try integer(key, default: ms, min: lo, max: 86_400_000) * nanosPerMilli
        }

        let subjects: SubjectPattern
        let subjectsText = try text("subjects", default: nil)
        do { subjects = try SubjectPattern(subjectsText) } catch {
            throw fail("subjects", error.reason)
        }
        let cooldown = try millis("cooldown_ms", default: defaultCooldownNanos / nanosPerMilli, min: 0)

        let kind: Kind
        switch rule {
        case "price_jump":
            kind = .priceJump(bps: try integer("bps", default: nil, min: 1, max: 100_000),
                              windowNanos: try millis("window_ms", default: nil))
        case "crossed_market":
            let locked: Bool
            switch entry["locked"] ?? "true" {
            case "true": locked = true
            case "false": locked = false
            case let other: throw fail("locked", "'\(other)' is not true or false")
            }
            kind = .crossedMarket(alertOnLocked: locked)
        case "volume_spike":
            let factorText = try text("factor", default: nil)
            let factor: Int64
            do { factor = try FixedPoint.parseE8(factorText) } catch { throw fail("factor", error.description) }
            guard factor >= FixedPoint.scale && factor <= 1_000_000 * FixedPoint.scale else {
                throw fail("factor", "\(factorText) is out of range; it must be between 1 and 1000000")
            }
            let lookback = try integer("lookback_buckets", default: 60, min: 1, max: 100_000)
            let minBuckets = try integer("min_buckets", default: min(10, lookback), min: 1, max: 100_000)
            guard minBuckets <= lookback else {
                throw fail("min_buckets", "\(minBuckets) is more than lookback_buckets (\(lookback)); it could never fire")
            }
            kind = .volumeSpike(bucketNanos: try millis("bucket_ms", default: nil), factorE8: factor,
                                minBuckets: Int(minBuckets), lookbackBuckets: Int(lookback))
        case "stale_quote":
            kind = .staleQuote(windowNanos: try millis("window_ms", default: nil))
        default: // trade_outside_quote
            kind = .tradeOutsideQuote(toleranceBps: try integer("tolerance_bps", default: 0, min: 0, max: 10_000))
        }
        return AlertRule(kind, subjects: subjects, cooldownNanos: cooldown)
    }
}
