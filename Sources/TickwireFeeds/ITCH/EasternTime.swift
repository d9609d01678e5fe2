import TickwireCore

/// A calendar date of a trading session (the ITCH and LOBSTER timestamps count from its midnight).
public struct TradingDate: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var year: Int64, month: Int64, day: Int64

    public init(year: Int64, month: Int64, day: Int64) throws(FeedConfigError) {
        guard (1...12).contains(month), day >= 1, day <= Nanos.daysIn(month: month, year: year), year >= 1900 else {
            throw FeedConfigError("\(year)-\(month)-\(day) is not a calendar date")
        }
        self.year = year; self.month = month; self.day = day
    }

    /// `2019-12-30` or `20191230`.
    public init(parsing text: String) throws(FeedConfigError) {
        let digits = text.filter { $0 != "-" }
        guard digits.count == 8, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
              text.count == 8 || (text.count == 10 && Array(text)[4] == "-" && Array(text)[7] == "-"),
              let y = Int64(digits.prefix(4)), let m = Int64(digits.dropFirst(4).prefix(2)), let d = Int64(digits.suffix(2)) else {
            throw FeedConfigError("date '\(text)' is not YYYY-MM-DD")
        }
        try self.init(year: y, month: m, day: d)
    }

    /// The date in a NASDAQ file name, `MMDDYYYY` leading the base name: `12302019.NASDAQ_ITCH50` → 2019-12-30
    /// (also `12302019_SNIPPET.NASDAQ_ITCH50`). Nil when the name does not start that way.
    public static func fromNASDAQFileName(_ path: String) -> TradingDate? {
        let base = Array(path.split(separator: "/").last ?? "")
        guard base.count >= 8, base.prefix(8).allSatisfy({ $0.isASCII && $0.isNumber }),
              base.count == 8 || !(base[8].isNumber) else { return nil }
        let s = String(base.prefix(8))
        guard let m = Int64(s.prefix(2)), let d = Int64(s.dropFirst(2).prefix(2)), let y = Int64(s.suffix(4)) else { return nil }
        return try? TradingDate(year: y, month: m, day: d)
    }

    /// The first `YYYY-MM-DD` or `YYYYMMDD` found in a file's base name, as in LOBSTER's
    /// `AAPL_2012-06-21_34200000_57600000_message_10.csv` or this project's fixture names.
    public static func fromISOInFileName(_ path: String) -> TradingDate? {
        let base = String(path.split(separator: "/").last ?? "")
        for token in base.split(whereSeparator: { $0 == "_" || $0 == "." }) {
            if token.count == 10 || token.count == 8, let d = try? TradingDate(parsing: String(token)) { return d }
        }
        return nil
    }

    /// Days since 1970-01-01.
    public var epochDays: Int64 { Nanos.days(fromCivil: year, month, day) }
    public var description: String {
        func pad(_ v: Int64, _ w: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, w - s.count)) + s }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))"
    }
}

/// Converts "nanoseconds since midnight, US Eastern" of one trading date to UTC epoch nanoseconds.
///
/// The US daylight-saving rule is implemented here rather than read from a tz database, so the result does not
/// depend on the machine: since 2007 DST runs from 02:00 local on the second Sunday of March to 02:00 local on
/// the first Sunday of November (1987–2006: first Sunday of April to last Sunday of October). EST is UTC−5, EDT
/// UTC−4. On a switch day the time of day is read as wall-clock time: before 02:00 the offset of midnight
/// applies, from 02:00 the new one (the repeated hour in November is taken as its first, EDT, occurrence).
public struct EasternClock: Sendable, Equatable {
    public let date: TradingDate
    /// UTC nanoseconds of local midnight.
    public let midnightUTC: Int64
    /// Time of day (ns) from which `delta` is added; `Int64.max` on days with no switch.
    public let switchAt: Int64
    public let delta: Int64

    static let hour: Int64 = 3_600 * Nanos.perSecond

    public init(date: TradingDate) {
        self.date = date
        let day = date.epochDays
        let (start, end) = EasternClock.dstDays(year: date.year)
        let dstAtMidnight = day > start && day <= end
        midnightUTC = day * Nanos.perDay + (dstAtMidnight ? 4 : 5) * EasternClock.hour
        if day == start { switchAt = 2 * EasternClock.hour; delta = -EasternClock.hour }
        else if day == end { switchAt = 2 * EasternClock.hour; delta = EasternClock.hour }
        else { switchAt = Int64.max; delta = 0 }
    }

    /// UTC epoch nanoseconds of `nanos` after local midnight.
    @inlinable @inline(__always)
    public func utc(nanosSinceMidnight nanos: Int64) -> Nanos {
        Nanos(midnightUTC &+ nanos &+ (nanos >= switchAt ? delta : 0))
    }

    /// Whether daylight-saving time is in force at local noon of `date` (for tests and docs).
    public static func isDaylightSaving(_ date: TradingDate) -> Bool {
        let (start, end) = dstDays(year: date.year)
        return date.epochDays >= start && date.epochDays < end
    }

    /// The epoch days of the DST start and end Sundays of a year.
    static func dstDays(year: Int64) -> (start: Int64, end: Int64) {
        func weekday(_ days: Int64) -> Int64 { ((days + 4) % 7 + 7) % 7 }   // 1970-01-01 was a Thursday; 0 = Sunday
        func nthSunday(_ n: Int64, month: Int64) -> Int64 {
            let first = Nanos.days(fromCivil: year, month, 1)
            return first + (7 - weekday(first)) % 7 + 7 * (n - 1)
        }
        if year >= 2007 { return (nthSunday(2, month: 3), nthSunday(1, month: 11)) }
        let oct31 = Nanos.days(fromCivil: year, 10, 31)
        return (nthSunday(1, month: 4), oct31 - weekday(oct31))
    }
}

/// A configuration or specification error: what was wrong, in words a user can act on.
public struct FeedConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
