/// Why a decimal string could not become a fixed-point number.
public struct FixedPointError: Error, Equatable, CustomStringConvertible, Sendable {
    public let input: String
    public let reason: String
    public var description: String { "invalid number '\(input)': \(reason)" }
}

/// A signed decimal with exactly 8 fractional digits, stored as an integer count of 1e-8 units.
///
/// Eight digits hold every venue we read without rounding: ITCH prices have 4 (8 for MWCB levels), crypto
/// quantities 3–8. The range, ±92 billion, covers any price or share count a desk trades.
public protocol FixedPoint8: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The value in units of 1e-8.
    var e8: Int64 { get }
    init(e8: Int64)
}

public enum FixedPoint {
    public static let scale: Int64 = 100_000_000
    public static let fractionDigits = 8

    /// Parses `-12.345`, `7`, `0.00000001` exactly; more than 8 fractional digits, exponents,
    /// or anything but digits, one dot and a leading sign is an error.
    public static func parseE8(_ text: String) throws(FixedPointError) -> Int64 {
        func fail(_ r: String) -> FixedPointError { FixedPointError(input: text, reason: r) }
        var bytes = Array(text.utf8)[...]
        if bytes.isEmpty { throw fail("it is empty") }
        var negative = false
        if bytes.first == UInt8(ascii: "-") || bytes.first == UInt8(ascii: "+") {
            negative = bytes.first == UInt8(ascii: "-")
            bytes = bytes.dropFirst()
        }
        var whole: Int64 = 0, frac: Int64 = 0, fracDigits = 0, sawDot = false, digits = 0
        for b in bytes {
            if b == UInt8(ascii: ".") {
                if sawDot { throw fail("it has two decimal points") }
                sawDot = true
                continue
            }
            guard b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") else {
                throw fail("'\(Character(Unicode.Scalar(b)))' is not a digit")
            }
            digits += 1
            let d = Int64(b - UInt8(ascii: "0"))
            if sawDot {
                fracDigits += 1
                if fracDigits > fractionDigits {
                    if d != 0 { throw fail("more than \(fractionDigits) fractional digits") }
                    continue
                }
                frac = frac * 10 + d
            } else {
                let (m, o1) = whole.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.addingReportingOverflow(d)
                if o1 || o2 || s > Int64.max / scale { throw fail("it is too large for 8 fractional digits in 64 bits") }
                whole = s
            }
        }
        if digits == 0 { throw fail("it has no digits") }
        for _ in min(fracDigits, fractionDigits)..<fractionDigits { frac *= 10 }
        let value = whole * scale + frac
        return negative ? -value : value
    }

    /// A decimal from its bytes (optional `-`, digits, optional `.` and at most 8 fraction digits, at most 10 whole
    /// digits, so it cannot overflow) as e8, without making a String: the fast path of the parsers that read
    /// mapped files and input lines. Nil for anything else, which `parseE8` then judges and explains.
    @inlinable
    public static func parseE8(bytes p: UnsafeRawBufferPointer) -> Int64? {
        var i = 0
        guard i < p.count else { return nil }
        let negative = p[i] == UInt8(ascii: "-")
        if negative { i += 1 }
        var whole: Int64 = 0, wholeDigits = 0
        while i < p.count {
            let d = p[i] &- UInt8(ascii: "0")
            if d >= 10 { break }
            whole = whole &* 10 &+ Int64(d); wholeDigits += 1; i += 1
        }
        var frac: Int64 = 0, fracDigits = 0
        if i < p.count && p[i] == UInt8(ascii: ".") {
            i += 1
            while i < p.count {
                let d = p[i] &- UInt8(ascii: "0")
                if d >= 10 { return nil }
                frac = frac &* 10 &+ Int64(d); fracDigits += 1; i += 1
            }
        }
        guard i == p.count, wholeDigits + fracDigits > 0, wholeDigits <= 10, fracDigits <= fractionDigits else { return nil }
        for _ in fracDigits..<fractionDigits { frac &*= 10 }
        let v = whole &* scale &+ frac
        return negative ? -v : v
    }

    /// The exact decimal text of an e8 value: no exponent, trailing zeros trimmed (`12.5`, `100`, `-0.0001`).
    public static func format(e8: Int64) -> String {
        var out = [UInt8]()
        out.reserveCapacity(24)
        appendDecimal(e8: e8, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the exact decimal text to a byte buffer (used by the JSONL writer without building Strings).
    public static func appendDecimal(e8: Int64, to out: inout [UInt8]) {
        let magnitude = e8.magnitude
        if e8 < 0 { out.append(UInt8(ascii: "-")) }
        appendUnsigned(magnitude / UInt64(scale), to: &out)
        var frac = magnitude % UInt64(scale)
        if frac == 0 { return }
        var digits = fractionDigits
        while frac % 10 == 0 { frac /= 10; digits -= 1 }
        out.append(UInt8(ascii: "."))
        // `digits` fractional digits, leading zeros kept, written from the right in place.
        let start = out.count
        out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: digits))
        var i = start + digits - 1
        while frac > 0 { out[i] = UInt8(ascii: "0") + UInt8(frac % 10); frac /= 10; i -= 1 }
    }

    public static func appendUnsigned(_ value: UInt64, to out: inout [UInt8]) {
        if value == 0 { out.append(UInt8(ascii: "0")); return }
        // Digits are appended least significant first, then reversed in place: no temporary array.
        let start = out.count
        var v = value
        while v > 0 { out.append(UInt8(ascii: "0") + UInt8(v % 10)); v /= 10 }
        out[start...].reverse()
    }

    public static func appendSigned(_ value: Int64, to out: inout [UInt8]) {
        if value < 0 { out.append(UInt8(ascii: "-")) }
        appendUnsigned(value.magnitude, to: &out)
    }
}

extension FixedPoint8 {
    /// Parses a decimal string exactly. - Throws: `FixedPointError` saying what is wrong.
    public init(parsing text: String) throws(FixedPointError) { self.init(e8: try FixedPoint.parseE8(text)) }
    /// From an integer count of units of 10^-decimals (ITCH `Price(4)`: decimals 4).
    public init(units: Int64, decimals: Int) {
        precondition(decimals >= 0 && decimals <= FixedPoint.fractionDigits)
        var m: Int64 = 1
        for _ in 0..<(FixedPoint.fractionDigits - decimals) { m *= 10 }
        self.init(e8: units &* m)
    }
    public var description: String { FixedPoint.format(e8: e8) }
    public static func < (a: Self, b: Self) -> Bool { a.e8 < b.e8 }
    public static var zero: Self { Self(e8: 0) }
}

/// A price, fixed-point with 8 fractional digits (`e8` = price × 10^8).
@frozen public struct Price: FixedPoint8 {
    public var e8: Int64
    @inlinable public init(e8: Int64) { self.e8 = e8 }
}

/// A quantity (shares, contracts, coins), fixed-point with 8 fractional digits.
@frozen public struct Quantity: FixedPoint8 {
    public var e8: Int64
    @inlinable public init(e8: Int64) { self.e8 = e8 }
}
