import CTickwireSys
import Synchronization
import TickwireCore

/// The embedded default market: symbols quoted on several venues around a shared random-walk fair price, each
/// venue with its own spread; trades print inside the quote; every few seconds one symbol bursts.
///
/// Deterministic for a seed: the same seed makes the same sequence of prices, sizes and subjects (times come
/// from the wall clock, as a live feed's do).
public final class MarketSimulator: EventSource {
    public struct Options: Sendable {
        /// Events per second; 0 means as fast as the machine goes.
        public var rate: Int = 10_000
        public var symbols: [String] = MarketSimulator.defaultSymbols
        public var venues: [String] = ["XNAS", "XNYS"]
        public var seed: UInt64 = 20_191_230
        /// Mean seconds between bursts (one symbol trading and requoting far faster than the base rate).
        public var burstEverySeconds: Double = 2
        /// Stop after this many events (nil: run until stopped).
        public var limit: Int? = nil
        public init() {}
    }

    public static let defaultSymbols = [
        "AAPL", "MSFT", "AMZN", "GOOGL", "META", "NVDA", "TSLA", "JPM", "V", "JNJ", "WMT", "PG",
        "XOM", "MA", "HD", "CVX", "KO", "PEP", "BAC", "CSCO", "INTC", "ORCL", "NFLX", "ADBE",
    ]

    public let name = "sim"
    /// Flushes before each pacing sleep; unpaced, it never waits.
    public var flushesSink: Bool { true }
    public let options: Options
    private let emitted = Atomic<UInt64>(0)
    private let bursts = Atomic<UInt64>(0)

    /// - Precondition: at least one symbol and venue; the caller validated them as subject tokens.
    public init(options: Options = Options()) {
        precondition(!options.symbols.isEmpty && !options.venues.isEmpty)
        self.options = options
    }

    public func counters() -> [(name: String, value: UInt64)] {
        [("events", emitted.load(ordering: .relaxed)), ("bursts", bursts.load(ordering: .relaxed))]
    }

    private struct Book {
        var quote: SubjectID
        var trade: SubjectID
        var status: SubjectID
        var halfSpreadTicks: Int64
        var bidSize: Int64
        var askSize: Int64
        /// The last quote this venue published (cents); trades print inside it. 0 until the first quote.
        var bid: Int64 = 0
        var ask: Int64 = 0
    }

    private struct Instrument {
        var fairTicks: Int64        // fair price in cents
        var books: [Book]           // one per venue
    }

    public func run(into sink: EventSink, stop: StopSignal) throws {
        var rng = SplitMix64(seed: options.seed)
        let tick: Int64 = 1_000_000   // one cent in e8
        var instruments: [Instrument] = options.symbols.map { symbol in
            let start = Int64(2_000 + rng.next(below: 48_000))   // $20 to $500
            let books = options.venues.map { venue in
                Book(quote: sink.subjects.intern(text: Subject.marketData(venue: venue, symbol: symbol, kind: .quote).text),
                     trade: sink.subjects.intern(text: Subject.marketData(venue: venue, symbol: symbol, kind: .trade).text),
                     status: sink.subjects.intern(text: Subject.marketData(venue: venue, symbol: symbol, kind: .status).text),
                     halfSpreadTicks: Int64(1 + rng.next(below: 3)), bidSize: 100, askSize: 100)
            }
            return Instrument(fairTicks: start, books: books)
        }

        var now = Nanos.now()
        var count = 0
        func emit(_ e: Event) {
            sink.emit(e)
            count += 1
        }
        // Every book opens with a trading-state STATUS, as a venue's session start would.
        for inst in instruments {
            for book in inst.books {
                emit(.status(book.status, Status(category: .trading, state: UInt8(ascii: "T"), reason: "OPEN"),
                             eventTime: now, knownTime: now))
            }
        }

        let startMono = tw_monotonic_ns()
        let rate = options.rate
        // Ids from the start time on (nanoseconds, one per trade after): unique across restarts, since a run makes
        // far fewer trades than nanoseconds pass before the next start. The store takes the same (subject, event
        // time, id) for a correction, so ids must never repeat.
        var tradeID = UInt64(max(1, Nanos.now().rawValue))
        var burstLeft = 0, burstSymbol = 0
        var nextBurstAt = startMono + Int64(options.burstEverySeconds * 1e9)

        while !stop.isRaised {
            if let limit = options.limit, count >= limit { break }
            let mono = tw_monotonic_ns()
            // Pace: the number of events owed by now at the base rate; bursts ride on top of it.
            if rate > 0 && burstLeft == 0 {
                let owed = Int((mono - startMono) / 1_000) * rate / 1_000_000
                if count >= owed {
                    let ahead = Int64(count - owed + 1) * 1_000_000_000 / Int64(rate)
                    sink.flush()
                    sleepNanos(min(ahead, 2_000_000))
                    continue
                }
            }
            if burstLeft == 0 && mono >= nextBurstAt && options.burstEverySeconds > 0 {
                burstLeft = 50 + Int(rng.next(below: 450))
                burstSymbol = Int(rng.next(below: UInt64(instruments.count)))
                nextBurstAt = mono + Int64(options.burstEverySeconds * 1e9 * (0.5 + rng.unit()))
                bursts.add(1, ordering: .relaxed)
            }

            let i: Int
            if burstLeft > 0 { i = burstSymbol; burstLeft -= 1 } else { i = Int(rng.next(below: UInt64(instruments.count))) }
            let v = Int(rng.next(below: UInt64(instruments[i].books.count)))
            now = Nanos.now()
            // The venue stamped the event a little before we learned of it: 20 to 220 microseconds of transit.
            let eventTime = Nanos(now.rawValue - 20_000 - Int64(rng.next(below: 200_000)))

            if rng.next(below: 100) < 22 && instruments[i].books[v].bid > 0 {
                let b = instruments[i].books[v]
                // Inside the quote this venue last published, as a real matching engine prints.
                let bid = b.bid, ask = b.ask
                // Inside the quote: at the bid, at the ask, or anywhere between.
                let price = bid + Int64(rng.next(below: UInt64(ask - bid + 1)))
                let side: Side = price * 2 >= bid + ask ? .buy : .sell
                let size = Int64(1 + rng.next(below: 5)) * 100
                emit(.trade(b.trade, price: Price(e8: price * tick), size: Quantity(e8: size * FixedPoint.scale), side: side,
                            tradeID: tradeID, eventTime: eventTime, knownTime: now))
                tradeID += 1
            } else {
                // Random walk of the fair price, with a drift back toward where it started to keep prices sane.
                let step = Int64(rng.next(below: 5)) - 2
                instruments[i].fairTicks = max(100, instruments[i].fairTicks + step)
                var b = instruments[i].books[v]
                if rng.next(below: 10) == 0 { b.halfSpreadTicks = Int64(1 + rng.next(below: 3)) }
                b.bidSize = Int64(1 + rng.next(below: 20)) * 100
                b.askSize = Int64(1 + rng.next(below: 20)) * 100
                let fair = instruments[i].fairTicks
                b.bid = fair - b.halfSpreadTicks
                b.ask = fair + b.halfSpreadTicks
                instruments[i].books[v] = b
                emit(.quote(b.quote, bid: Price(e8: (fair - b.halfSpreadTicks) * tick), bidSize: Quantity(e8: b.bidSize * FixedPoint.scale),
                            ask: Price(e8: (fair + b.halfSpreadTicks) * tick), askSize: Quantity(e8: b.askSize * FixedPoint.scale),
                            eventTime: eventTime, knownTime: now))
            }
            emitted.store(UInt64(count), ordering: .relaxed)
        }
        emitted.store(UInt64(count), ordering: .relaxed)
    }

    private func sleepNanos(_ ns: Int64) {
        var ts = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
        nanosleep(&ts, nil)
    }
}

/// A small, fast, seedable generator (Steele, Lea and Flood's SplitMix64).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in 0..<bound (bound > 0), by Lemire's multiply-shift (bias below 2^-32 for our bounds).
    public mutating func next(below bound: UInt64) -> UInt64 { ((next() >> 32) &* bound) >> 32 }
    /// Uniform in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }
}

#if canImport(Glibc)
import Glibc
#endif
