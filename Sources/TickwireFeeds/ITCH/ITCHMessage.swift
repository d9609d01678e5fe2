import TickwireCore

/// The 23 message types of NASDAQ TotalView-ITCH 5.0; the raw value is the type byte.
public enum ITCHMessageType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case systemEvent = 0x53            // S
    case stockDirectory = 0x52         // R
    case stockTradingAction = 0x48     // H
    case regSHORestriction = 0x59      // Y
    case marketParticipantPosition = 0x4C // L
    case mwcbDeclineLevel = 0x56       // V
    case mwcbStatus = 0x57             // W
    case ipoQuotingPeriodUpdate = 0x4B // K
    case luldAuctionCollar = 0x4A      // J
    case operationalHalt = 0x68        // h
    case addOrder = 0x41               // A
    case addOrderMPID = 0x46           // F
    case orderExecuted = 0x45          // E
    case orderExecutedWithPrice = 0x43 // C
    case orderCancel = 0x58            // X
    case orderDelete = 0x44            // D
    case orderReplace = 0x55           // U
    case trade = 0x50                  // P
    case crossTrade = 0x51             // Q
    case brokenTrade = 0x42            // B
    case noii = 0x49                   // I
    case rpii = 0x4E                   // N
    case dlcrPriceDiscovery = 0x4F     // O

    /// The one-letter code: `A`, `h`, …
    public var letter: String { String(UnicodeScalar(rawValue)) }
    public var description: String { letter }

    /// The message length without the 2-byte framing prefix.
    @inlinable public var length: Int { ITCHMessageType.length(ofType: rawValue) }

    /// The length the type byte `type` requires, or 0 for a byte that names no ITCH 5.0 message.
    /// A switch rather than a table: it compiles to a lookup with no lazy global initialisation on the hot path.
    @inlinable @inline(__always)
    public static func length(ofType type: UInt8) -> Int {
        switch type {
        case 0x53: 12   // S
        case 0x52: 39   // R
        case 0x48: 25   // H
        case 0x59: 20   // Y
        case 0x4C: 26   // L
        case 0x56: 35   // V
        case 0x57: 12   // W
        case 0x4B: 28   // K
        case 0x4A: 35   // J
        case 0x68: 21   // h
        case 0x41: 36   // A
        case 0x46: 40   // F
        case 0x45: 31   // E
        case 0x43: 36   // C
        case 0x58: 23   // X
        case 0x44: 19   // D
        case 0x55: 35   // U
        case 0x50: 44   // P
        case 0x51: 40   // Q
        case 0x42: 19   // B
        case 0x49: 50   // I
        case 0x4E: 20   // N
        case 0x4F: 48   // O
        default: 0
        }
    }
}

/// An 8-byte ITCH stock symbol kept as its raw bytes (left-justified, space-padded): comparing and hashing it
/// costs one integer; `text` builds the String only when a subject is first named.
@frozen public struct ITCHStock: Hashable, Sendable, CustomStringConvertible {
    /// The 8 bytes in wire order, loaded as a little-endian word (byte 0 in the low bits).
    public var raw: UInt64
    @inlinable public init(raw: UInt64) { self.raw = raw }
    /// From text, space-padded or truncated to 8 bytes.
    public init(_ text: String) {
        var v: UInt64 = 0
        var bytes = Array(text.utf8.prefix(8))
        while bytes.count < 8 { bytes.append(0x20) }
        for (i, b) in bytes.enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        raw = v
    }
    public var text: String {
        var bytes = [UInt8]()
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: raw >> (8 * UInt64(i)))) }
        while let last = bytes.last, last == 0x20 || last == 0 { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }
    public var description: String { text }
}

/// One ITCH message read in place: a pointer to its type byte and its length. Nothing is copied; each field
/// is loaded (big-endian) when asked for.
///
/// - warning: the pointer borrows the input buffer (a mapped file, a datagram); use the message only while
///   that buffer is alive and do not keep it past the callback or loop iteration that produced it.
@frozen public struct ITCHMessage {
    public let base: UnsafeRawPointer
    public let length: Int

    @inlinable @inline(__always)
    public init(base: UnsafeRawPointer, length: Int) { self.base = base; self.length = length }

    @inlinable public var typeByte: UInt8 { base.load(as: UInt8.self) }
    /// The type; nil never happens for a message produced by a reader (they validate the type).
    @inlinable public var type: ITCHMessageType? { ITCHMessageType(rawValue: typeByte) }
    @inlinable public var stockLocate: UInt16 { u16(1) }
    @inlinable public var trackingNumber: UInt16 { u16(3) }
    /// Nanoseconds since midnight, US Eastern, of the trading date.
    @inlinable public var timestamp: UInt64 { u48(5) }

    @inlinable @inline(__always) public func u8(_ at: Int) -> UInt8 { base.load(fromByteOffset: at, as: UInt8.self) }
    @inlinable @inline(__always) public func u16(_ at: Int) -> UInt16 {
        UInt16(bigEndian: base.loadUnaligned(fromByteOffset: at, as: UInt16.self))
    }
    @inlinable @inline(__always) public func u32(_ at: Int) -> UInt32 {
        UInt32(bigEndian: base.loadUnaligned(fromByteOffset: at, as: UInt32.self))
    }
    @inlinable @inline(__always) public func u48(_ at: Int) -> UInt64 {
        UInt64(u16(at)) << 32 | UInt64(u32(at + 2))
    }
    @inlinable @inline(__always) public func u64(_ at: Int) -> UInt64 {
        UInt64(bigEndian: base.loadUnaligned(fromByteOffset: at, as: UInt64.self))
    }
    @inlinable @inline(__always) public func stock(_ at: Int) -> ITCHStock {
        ITCHStock(raw: UInt64(littleEndian: base.loadUnaligned(fromByteOffset: at, as: UInt64.self)))
    }

    // Fields of the order messages, by the offsets in the specification (A F E C X D U P share the order
    // reference at 11).
    @inlinable public var orderReference: UInt64 { u64(11) }
    /// A, F, P: `B` or `S`.
    @inlinable public var sideByte: UInt8 { u8(19) }
    /// A, F, P: shares.
    @inlinable public var shares: UInt32 { u32(20) }
    /// A, F, P: Price(4).
    @inlinable public var price: UInt32 { u32(32) }
    /// E, C: executed shares; X: cancelled shares.
    @inlinable public var executedShares: UInt32 { u32(19) }
    /// E, C: match number.
    @inlinable public var executionMatchNumber: UInt64 { u64(23) }
    /// U: the new order reference, shares and price.
    @inlinable public var replaceNewReference: UInt64 { u64(19) }
    @inlinable public var replaceShares: UInt32 { u32(27) }
    @inlinable public var replacePrice: UInt32 { u32(31) }

    /// The symbol a message carries, for the types that carry one (R H Y L K J h A F P Q I N O); nil otherwise.
    @inlinable public var carriedStock: ITCHStock? {
        switch typeByte {
        case 0x52, 0x48, 0x59, 0x4B, 0x4A, 0x68, 0x4E, 0x4F: stock(11) // R H Y K J h N O
        case 0x4C: stock(15)        // L: after the MPID
        case 0x41, 0x46, 0x50: stock(24) // A F P
        case 0x51: stock(19)        // Q
        case 0x49: stock(28)        // I
        default: nil
        }
    }

    /// Every field, typed. Reads the bytes once; for the hot path prefer the field accessors above.
    public var body: ITCHBody {
        let ts = timestamp
        switch typeByte {
        case 0x53: return .systemEvent(eventCode: u8(11))
        case 0x52:
            return .stockDirectory(.init(stock: stock(11), marketCategory: u8(19), financialStatus: u8(20),
                                         roundLotSize: u32(21), roundLotsOnly: u8(25), issueClassification: u8(26),
                                         issueSubType: u16(27), authenticity: u8(29), shortSaleThreshold: u8(30),
                                         ipoFlag: u8(31), luldTier: u8(32), etpFlag: u8(33),
                                         etpLeverageFactor: u32(34), inverseIndicator: u8(38)))
        case 0x48: return .stockTradingAction(stock: stock(11), tradingState: u8(19), reserved: u8(20), reason: u32(21))
        case 0x59: return .regSHORestriction(stock: stock(11), action: u8(19))
        case 0x4C:
            return .marketParticipantPosition(mpid: u32(11), stock: stock(15), primaryMarketMaker: u8(23),
                                              marketMakerMode: u8(24), participantState: u8(25))
        case 0x56: return .mwcbDeclineLevel(level1: u64(11), level2: u64(19), level3: u64(27))
        case 0x57: return .mwcbStatus(breachedLevel: u8(11))
        case 0x4B:
            return .ipoQuotingPeriodUpdate(stock: stock(11), releaseTime: u32(19), releaseQualifier: u8(23), ipoPrice: u32(24))
        case 0x4A:
            return .luldAuctionCollar(stock: stock(11), referencePrice: u32(19), upperPrice: u32(23),
                                      lowerPrice: u32(27), extension: u32(31))
        case 0x68: return .operationalHalt(stock: stock(11), marketCode: u8(19), haltAction: u8(20))
        case 0x41:
            return .addOrder(reference: u64(11), side: u8(19), shares: u32(20), stock: stock(24), price: u32(32), attribution: nil)
        case 0x46:
            return .addOrder(reference: u64(11), side: u8(19), shares: u32(20), stock: stock(24), price: u32(32), attribution: u32(36))
        case 0x45: return .orderExecuted(reference: u64(11), shares: u32(19), matchNumber: u64(23))
        case 0x43:
            return .orderExecutedWithPrice(reference: u64(11), shares: u32(19), matchNumber: u64(23),
                                           printable: u8(31) == UInt8(ascii: "Y"), price: u32(32))
        case 0x58: return .orderCancel(reference: u64(11), cancelledShares: u32(19))
        case 0x44: return .orderDelete(reference: u64(11))
        case 0x55: return .orderReplace(original: u64(11), new: u64(19), shares: u32(27), price: u32(31))
        case 0x50:
            return .trade(reference: u64(11), side: u8(19), shares: u32(20), stock: stock(24), price: u32(32), matchNumber: u64(36))
        case 0x51:
            return .crossTrade(shares: u64(11), stock: stock(19), price: u32(27), matchNumber: u64(31), crossType: u8(39))
        case 0x42: return .brokenTrade(matchNumber: u64(11))
        case 0x49:
            return .noii(.init(pairedShares: u64(11), imbalanceShares: u64(19), imbalanceDirection: u8(27), stock: stock(28),
                               farPrice: u32(36), nearPrice: u32(40), currentReferencePrice: u32(44), crossType: u8(48),
                               priceVariationIndicator: u8(49)))
        case 0x4E: return .rpii(stock: stock(11), interestFlag: u8(19))
        case 0x4F:
            return .dlcrPriceDiscovery(.init(stock: stock(11), openEligibility: u8(19), minAllowablePrice: u32(20),
                                             maxAllowablePrice: u32(24), nearExecutionPrice: u32(28),
                                             nearExecutionTime: u64(32), lowerCollar: u32(40), upperCollar: u32(44)))
        default:
            preconditionFailure("ITCHMessage of unvalidated type \(typeByte) at timestamp \(ts)")
        }
    }
}

/// The fields of each ITCH 5.0 message after the common header. Prices are the wire integers: Price(4)
/// (4 implied decimals) everywhere except the MWCB levels of V, which have 8.
public enum ITCHBody: Equatable, Sendable {
    public struct StockDirectory: Equatable, Sendable {
        public var stock: ITCHStock
        public var marketCategory, financialStatus: UInt8
        public var roundLotSize: UInt32
        public var roundLotsOnly, issueClassification: UInt8
        public var issueSubType: UInt16
        public var authenticity, shortSaleThreshold, ipoFlag, luldTier, etpFlag: UInt8
        public var etpLeverageFactor: UInt32
        public var inverseIndicator: UInt8
    }
    public struct NOII: Equatable, Sendable {
        public var pairedShares, imbalanceShares: UInt64
        public var imbalanceDirection: UInt8
        public var stock: ITCHStock
        public var farPrice, nearPrice, currentReferencePrice: UInt32
        public var crossType, priceVariationIndicator: UInt8
    }
    public struct DLCR: Equatable, Sendable {
        public var stock: ITCHStock
        public var openEligibility: UInt8
        public var minAllowablePrice, maxAllowablePrice, nearExecutionPrice: UInt32
        public var nearExecutionTime: UInt64
        public var lowerCollar, upperCollar: UInt32
    }

    case systemEvent(eventCode: UInt8)
    case stockDirectory(StockDirectory)
    case stockTradingAction(stock: ITCHStock, tradingState: UInt8, reserved: UInt8, reason: UInt32)
    case regSHORestriction(stock: ITCHStock, action: UInt8)
    case marketParticipantPosition(mpid: UInt32, stock: ITCHStock, primaryMarketMaker: UInt8, marketMakerMode: UInt8,
                                   participantState: UInt8)
    case mwcbDeclineLevel(level1: UInt64, level2: UInt64, level3: UInt64)
    case mwcbStatus(breachedLevel: UInt8)
    case ipoQuotingPeriodUpdate(stock: ITCHStock, releaseTime: UInt32, releaseQualifier: UInt8, ipoPrice: UInt32)
    case luldAuctionCollar(stock: ITCHStock, referencePrice: UInt32, upperPrice: UInt32, lowerPrice: UInt32, extension: UInt32)
    case operationalHalt(stock: ITCHStock, marketCode: UInt8, haltAction: UInt8)
    /// A and F (F carries the MPID attribution).
    case addOrder(reference: UInt64, side: UInt8, shares: UInt32, stock: ITCHStock, price: UInt32, attribution: UInt32?)
    case orderExecuted(reference: UInt64, shares: UInt32, matchNumber: UInt64)
    case orderExecutedWithPrice(reference: UInt64, shares: UInt32, matchNumber: UInt64, printable: Bool, price: UInt32)
    case orderCancel(reference: UInt64, cancelledShares: UInt32)
    case orderDelete(reference: UInt64)
    case orderReplace(original: UInt64, new: UInt64, shares: UInt32, price: UInt32)
    case trade(reference: UInt64, side: UInt8, shares: UInt32, stock: ITCHStock, price: UInt32, matchNumber: UInt64)
    case crossTrade(shares: UInt64, stock: ITCHStock, price: UInt32, matchNumber: UInt64, crossType: UInt8)
    case brokenTrade(matchNumber: UInt64)
    case noii(NOII)
    case rpii(stock: ITCHStock, interestFlag: UInt8)
    case dlcrPriceDiscovery(DLCR)
}
