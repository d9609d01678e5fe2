/// Why a time string could not be read.
public struct TimeError: Error, Equatable, CustomStringConvertible, Sendable {
    public let input: String
    public let reason: String
    public var description: String { "invalid time '\(input)': \(reason)" }
}

/// A point in time: nanoseconds since the Unix epoch, UTC. Every event carries two: its event time (by the
/// venue's clock) and its known time (when Tickwire learned it).
@frozen public struct Nanos: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: Int64
    @inlinable public init(_ rawValue: Int64) { self.rawValue = rawValue }

    public static func < (a: Nanos, b: Nanos) -> Bool { a.rawValue < b.rawValue }
    public static let zero = Nanos(0)
    public static let max = Nanos(Int64.max)

    public static let perSecond: Int64 = 1_000_000_000
    public static let perDay: Int64 = 86_400 * perSecond

    /// The wall clock now (CLOCK_REALTIME).
    public static func now() -> Nanos {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Nanos(Int64(ts.tv_sec) &* perSecond &+ Int64(ts.tv_nsec))
    }

    /// ISO-8601 UTC with nanoseconds: `2019-12-30T14:30:00.000000230Z`.
    public var description: String { iso8601 }

    public var iso8601: String {
        let days = rawValue >= 0 ? rawValue / Nanos.perDay : (rawValue - Nanos.perDay + 1) / Nanos.perDay
        let inDay = rawValue - days * Nanos.perDay
        let (y, m, d) = Nanos.civil(fromDays: days)
        let secs = inDay / Nanos.perSecond, frac = inDay % Nanos.perSecond
        func pad(_ v: Int64, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: Swift.max(0, w - s.count)) + s
        }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secs / 3600, 2)):\(pad(secs / 60 % 60, 2)):\(pad(secs % 60, 2)).\(pad(frac, 9))Z"
    }

    /// Reads integer nanoseconds (`1577716200000000230`) or ISO-8601 UTC: `2019-12-30`,
    /// `2019-12-30T14:30:00Z`, `2019-12-30T14:30:00.123456789Z` (the `Z` or `+00:00` may be left off;
    /// a date alone means its midnight).
    public init(parsing text: String) throws(TimeError) {
        func fail(_ r: String) -> TimeError { TimeError(input: text, reason: r) }
        let t = text.trimmingSpaces()
        if t.isEmpty { throw fail("it is empty") }
        if let n = Int64(t) { self.init(n); return }
        var s = Substring(t)
        // A UTC offset (Z, or ±HH:MM after a time of day) is taken off: the result is always UTC.
        var offset: Int64 = 0
        if s.hasSuffix("Z") || s.hasSuffix("z") {
            s = s.dropLast()
        } else if s.count > 6, s.contains("T"), let sign = s.dropLast(5).last, sign == "+" || sign == "-" {
            let hm = s.suffix(5)
            guard hm.count == 5, hm[hm.index(hm.startIndex, offsetBy: 2)] == ":",
                  let h = Int64(hm.prefix(2)), let m = Int64(hm.suffix(2)), h <= 23, m <= 59 else {
                throw fail("the UTC offset '\(sign)\(hm)' is not ±HH:MM")
            }
            offset = (sign == "+" ? 1 : -1) * (h * 60 + m) * 60 * Nanos.perSecond
            s = s.dropLast(6)
        }
        let dateTime = s.split(separator: "T", maxSplits: 1, omittingEmptySubsequences: false)
        let date = dateTime[0].split(separator: "-", omittingEmptySubsequences: false)
        guard date.count == 3, date[0].count == 4, date[1].count == 2, date[2].count == 2,
              let y = Int64(date[0]), let mo = Int64(date[1]), let d = Int64(date[2]) else {
            throw fail("expected integer nanoseconds or an ISO-8601 UTC time such as 2019-12-30T14:30:00Z")
        }
        guard (1...12).contains(mo), d >= 1, d <= Nanos.daysIn(month: mo, year: y) else {
            throw fail("\(dateTime[0]) is not a calendar date")
        }
        var inDay: Int64 = 0
        if dateTime.count == 2 {
            let timeAndFrac = dateTime[1].split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
            let hms = timeAndFrac[0].split(separator: ":", omittingEmptySubsequences: false)
            guard hms.count >= 2, hms.count <= 3, hms.allSatisfy({ $0.count == 2 }),
                  let h = Int64(hms[0]), let mi = Int64(hms[1]), let se = hms.count == 3 ? Int64(hms[2]) : 0,
                  h < 24, mi < 60, se < 61 else {
                throw fail("the time of day '\(dateTime[1])' is not HH:MM[:SS[.fraction]]")
            }
            inDay = ((h * 60 + mi) * 60 + se) * Nanos.perSecond
            if timeAndFrac.count == 2 {
                let f = timeAndFrac[1]
                guard !f.isEmpty, f.count <= 9, f.allSatisfy({ $0.isASCII && $0.isNumber }), var v = Int64(f) else {
                    throw fail("the fraction of a second '\(f)' must be 1 to 9 digits")
                }
                for _ in f.count..<9 { v *= 10 }
                inDay += v
            }
        }
        self.init(Nanos.days(fromCivil: y, mo, d) * Nanos.perDay + inDay - offset)
    }

    // Howard Hinnant's civil-calendar algorithms (proleptic Gregorian), valid far beyond any trading date.
    public static func days(fromCivil y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    public static func civil(fromDays z0: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? yoe + era * 400 + 1 : yoe + era * 400, m, d)
    }

    public static func daysIn(month m: Int64, year y: Int64) -> Int64 {
        switch m {
        case 2: return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
