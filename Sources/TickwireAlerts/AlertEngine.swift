import Synchronization
import TickwireCore

/// Alerts fired and suppressed per rule code, written by the engine's thread and read from any thread
/// (metrics, `tickwire stats`).
public final class AlertCounters: Sendable {
    private let firedCounts = CounterBlock(count: AlertCode.allCases.count + 1)
    private let suppressedCounts = CounterBlock(count: AlertCode.allCases.count + 1)

    /// Alerts emitted with `code`.
    public func fired(_ code: AlertCode) -> UInt64 { firedCounts.load(Int(code.rawValue)) }
    /// Alerts with `code` held back by a rule's cooldown.
    public func suppressed(_ code: AlertCode) -> UInt64 { suppressedCounts.load(Int(code.rawValue)) }

    @inline(__always) func countFired(_ code: AlertCode) { firedCounts.add(Int(code.rawValue)) }
    @inline(__always) func countSuppressed(_ code: AlertCode) { suppressedCounts.add(Int(code.rawValue)) }
}

/// A fixed block of counters, written by the engine's one thread and read from any.
final class CounterBlock: @unchecked Sendable {
    private let cells: UnsafeMutablePointer<Atomic<UInt64>>
    let count: Int
    init(count: Int) {
        self.count = count
        cells = .allocate(capacity: count)
        for i in 0..<count { (cells + i).initialize(to: Atomic(0)) }
    }
    deinit { cells.deinitialize(count: count); cells.deallocate() }
    /// One writer: a load and a store, not a locked read-modify-write.
    @inline(__always) func add(_ i: Int) { cells[i].store(cells[i].load(ordering: .relaxed) &+ 1, ordering: .relaxed) }
    @inline(__always) func load(_ i: Int) -> UInt64 { cells[i].load(ordering: .relaxed) }
}

/// Complex-event rules over the market-data stream: reads events one at a time and emits ALERT events.
///
/// One consumer thread owns an engine: `process` and `tick` are not thread-safe (only `counters` may be read
/// from other threads). It may be built on one thread and handed to its consumer (hence `@unchecked Sendable`).
/// Per event the engine does no dictionary lookup, no String work and no allocation:
/// the first event of a `SubjectID` resolves, once, which rules apply to it and interns the alert subjects it
/// may raise; after that the subject's rule bindings and state are found by index in flat arrays. The only
/// later allocations are a price-jump window outgrowing its buffer (doubling, so amortised) and the
/// per-subject arrays growing on new subjects.
///
/// An alert is an `Event` of kind `.alert` on `ALERT.<RULE>.<SYMBOL>`, with `a` the `AlertCode`, `b` the
/// observed value, `c` the threshold it crossed and `d` a reference (their units per rule in docs/ALERTS.md),
/// the event and known times of the event that triggered it, and its `source`.
public final class AlertEngine: @unchecked Sendable {
    public let counters = AlertCounters()
    /// All mutable state lives in one struct so that a call to `process` makes one dynamic exclusivity check on
    /// the class's storage, not one per array touched (measured: 235 ns per event with the arrays as class
    /// properties; see BENCHMARKS.md).
    /// Not checked dynamically either: one thread at a time uses an engine, and the check (two runtime calls and a
    /// thread-local lookup per event) was a fifth of the daemon's alerts thread.
    @exclusivity(unchecked) var machine: Machine

    public var rules: [AlertRule] { machine.rules }
    public var subjects: SubjectTable { machine.subjects }

    /// - Parameters:
    ///   - rules: the rules to run, in the order their alerts are emitted for one event.
    ///   - subjects: the table events' subject ids point into; alert subjects are interned in it.
    public init(rules: [AlertRule], subjects: SubjectTable) {
        machine = Machine(rules: rules, subjects: subjects, counters: counters)
    }

    deinit { machine.deallocate() }

    /// Runs every rule that applies to `event`'s subject; calls `emit` with each alert raised, in rule order.
    /// - Complexity: O(rules bound to the subject), amortised O(1) for a price-jump window.
    public func process(_ event: Event, emit: (Event) -> Void) { machine.process(event, emit: emit) }

    /// Runs the rules over a batch of events (a run of ring slots), in order, with one exclusivity check on the
    /// engine's state for the whole batch.
    public func process(_ events: UnsafeBufferPointer<Event>, emit: (Event) -> Void) {
        machine.process(batch: events, emit: emit)
    }

    /// Checks the time-based rules (stale quotes) against `now`, a known-time clock (normally `Nanos.now()`);
    /// call it every few hundred milliseconds from the engine's thread.
    /// - Complexity: O(subjects under a stale-quote rule).
    public func tick(now: Nanos, emit: (Event) -> Void) { machine.tick(now: now, emit: emit) }

    /// What the engine knows of one subject, by `SubjectID`.
    struct Slot: BitwiseCopyable {
        static let unseen: UInt8 = 0, ignored: UInt8 = 1, bound: UInt8 = 2
        var status: UInt8 = Slot.unseen
        /// The market-data kind of the subject (`EventKind.trade` or `.quote`), raw.
        var kind: UInt8 = 0
        /// Whether a `trade_outside_quote` rule needs this QUOTE subject's latest quote.
        var tracksQuote = false
        /// Index into `quotes` (venue and symbol), or -1.
        var instrument: Int32 = -1
        var firstBinding: Int32 = 0
        var bindingCount: Int32 = 0
    }

    /// One rule applied to one subject: where its state is and which alert subjects it raises.
    struct Binding: BitwiseCopyable {
        /// Which rule kind, so the per-event switch never touches `rules` (and its patterns' Strings).
        enum Kind: UInt8 { case priceJump, crossedMarket, volumeSpike, staleQuote, tradeOutsideQuote }
        var kind: Kind
        var state: Int32
        var alertSubject: SubjectID
        /// The LOCKED subject of a crossed-market rule.
        var alertSubject2: SubjectID = 0
        var cooldown: Int64
        var lastAlert: Int64 = Int64.min
        var lastAlert2: Int64 = Int64.min
    }

    /// The latest top of book of one venue and symbol; 0 for an absent side.
    struct TopOfBook: BitwiseCopyable { var bid: Int64 = 0; var ask: Int64 = 0 }

    struct JumpState: BitwiseCopyable {
        var bps: Int64, window: Int64
        var mins = PriceWindow(), maxs = PriceWindow()
    }
    struct CrossState: BitwiseCopyable { var state: UInt8 = 0 /* 0 normal, 1 locked, 2 crossed */; var alertOnLocked: Bool }
    struct VolumeState: BitwiseCopyable {
        var bucketNanos: Int64, factorE8: Int64, minBuckets: Int, lookback: Int
        var bucket: Int64 = Int64.min
        /// The first event time past the current bucket.
        var bucketEnd: Int64 = Int64.min
        var volume: Int64 = 0
        var firedThisBucket = false
        var history: UnsafeMutablePointer<Int64>
        var head = 0, count = 0
        var sum: Int64 = 0
    }
    struct StaleState: BitwiseCopyable {
        var window: Int64
        var binding: Int32
        var lastKnown: Int64 = 0
        var lastEvent: Int64 = 0
        var source: UInt16 = 0
        /// False until the first quote (a subject is never stale before it has quoted), and after an alert
        /// until the next quote.
        var armed = false
    }

    /// The engine's state and rules: every array the per-event path touches.
    struct Machine {
        let rules: [AlertRule]
        let subjects: SubjectTable
        let counters: AlertCounters
        var slots = FlatArray<Slot>(capacity: 1024)
        var bindings = FlatArray<Binding>()
        var quotes = FlatArray<TopOfBook>()
        var instruments: [String: Int32] = [:]
        var jumps = FlatArray<JumpState>()
        var crosses = FlatArray<CrossState>()
        var volumes = FlatArray<VolumeState>()
        var stales = FlatArray<StaleState>()
        var outsides = FlatArray<Int64>()   // tolerance in bps, per binding state

        init(rules: [AlertRule], subjects: SubjectTable, counters: AlertCounters) {
            self.rules = rules
            self.subjects = subjects
            self.counters = counters
        }

        func deallocate() {
            for i in jumps.indices { jumps[i].mins.deallocate(); jumps[i].maxs.deallocate() }
            for i in volumes.indices { volumes[i].history.deallocate() }
            slots.deallocate(); bindings.deallocate(); quotes.deallocate(); jumps.deallocate()
            crosses.deallocate(); volumes.deallocate(); stales.deallocate(); outsides.deallocate()
        }

        // MARK: - The per-event path

        @inline(__always)
        mutating func process(_ event: Event, emit: (Event) -> Void) {
            let id = Int(event.subjectID)
            if id >= slots.count || slots[id].status == Slot.unseen { bind(event.subjectID) }
            let slot = slots[id]
            guard slot.status == Slot.bound, slot.kind == event.kind.rawValue else { return }
            if slot.tracksQuote { updateTopOfBook(Int(slot.instrument), event) }
            var b = Int(slot.firstBinding)
            let end = b + Int(slot.bindingCount)
            while b < end {
                let state = Int(bindings[b].state)
                switch bindings[b].kind {
                case .priceJump: priceJump(b, state, event, emit)
                case .crossedMarket: crossedMarket(b, state, event, emit)
                case .volumeSpike: volumeSpike(b, state, event, emit)
                case .staleQuote: stales[state].quoted(event)
                case .tradeOutsideQuote: tradeOutsideQuote(b, Int(slot.instrument), outsides[state], event, emit)
                }
                b += 1
            }
        }

        mutating func process(batch: UnsafeBufferPointer<Event>, emit: (Event) -> Void) {
            for e in batch { process(e, emit: emit) }
        }

        mutating func tick(now: Nanos, emit: (Event) -> Void) {
            let t = now.rawValue
            for i in stales.indices where stales[i].armed {
                let age = t &- stales[i].lastKnown
                guard age > stales[i].window else { continue }
                stales[i].armed = false
                let stale = stales[i]
                // Ages and windows in milliseconds, e8: 1.5 s stale reads 1500.
                fire(Int(stale.binding), second: false, code: .staleQuote,
                     value: age &* (FixedPoint.scale / AlertRule.nanosPerMilli),
                     threshold: stale.window &* (FixedPoint.scale / AlertRule.nanosPerMilli),
                     reference: stale.lastEvent, source: stale.source, eventTime: t, knownTime: t, emit)
            }
        }

        @inline(__always)
        /// Emits an alert unless the binding's cooldown holds it back; `threshold` is computed only when emitted.
        mutating func fire(_ b: Int, second: Bool, code: AlertCode, value: Int64, threshold: @autoclosure () -> Int64,
                  reference: Int64, source: UInt16, eventTime: Int64, knownTime: Int64, _ emit: (Event) -> Void) {
            let last = second ? bindings[b].lastAlert2 : bindings[b].lastAlert
            if last != Int64.min && eventTime &- last < bindings[b].cooldown {
                counters.countSuppressed(code)
                return
            }
            if second { bindings[b].lastAlert2 = eventTime } else { bindings[b].lastAlert = eventTime }
            counters.countFired(code)
            emit(Event(subjectID: second ? bindings[b].alertSubject2 : bindings[b].alertSubject, kind: .alert,
                       source: source, eventTime: Nanos(eventTime), knownTime: Nanos(knownTime),
                       a: Int64(code.rawValue), b: value, c: threshold(), d: reference))
        }

        @inline(__always)
        mutating func fire(_ b: Int, second: Bool = false, code: AlertCode, value: Int64, threshold: @autoclosure () -> Int64,
                  reference: Int64, trigger e: Event, _ emit: (Event) -> Void) {
            fire(b, second: second, code: code, value: value, threshold: threshold(), reference: reference,
                 source: e.source, eventTime: e.eventTime.rawValue, knownTime: e.knownTime.rawValue, emit)
        }

        // MARK: - Rules

        @inline(__always)
        mutating func priceJump(_ b: Int, _ s: Int, _ e: Event, _ emit: (Event) -> Void) {
            let p = e.a, t = e.eventTime.rawValue
            guard p > 0 else { return }
            let bps = Int128(jumps[s].bps), horizon = t &- jumps[s].window
            jumps[s].mins.evict(before: horizon)
            jumps[s].maxs.evict(before: horizon)
            if let low = jumps[s].mins.frontPrice, Int128(p - low) * 10_000 >= bps * Int128(low) {
                // The smallest price that would have fired: ceil(low × (1 + bps/10^4)).
                fire(b, code: .priceJump, value: p, threshold: Int64((Int128(low) * (10_000 + bps) + 9_999) / 10_000),
                     reference: low, trigger: e, emit)
            } else if let high = jumps[s].maxs.frontPrice, Int128(high - p) * 10_000 >= bps * Int128(high) {
                fire(b, code: .priceJump, value: p, threshold: Int64(Int128(high) * (10_000 - bps) / 10_000),
                     reference: high, trigger: e, emit)
            }
            jumps[s].mins.pushMin(time: t, price: p)
            jumps[s].maxs.pushMax(time: t, price: p)
        }

        @inline(__always)
        mutating func crossedMarket(_ b: Int, _ s: Int, _ e: Event, _ emit: (Event) -> Void) {
            let bid = e.a, bidSize = e.b, ask = e.c, askSize = e.d
            let now: UInt8
            if bid > 0 && ask > 0 && bidSize > 0 && askSize > 0 && bid >= ask {
                now = bid > ask ? 2 : (crosses[s].alertOnLocked ? 1 : 0)
            } else {
                now = 0
            }
            let before = crosses[s].state
            crosses[s].state = now
            guard now != 0 && now != before else { return }
            fire(b, second: now == 1, code: now == 2 ? .crossed : .locked, value: bid, threshold: ask,
                 reference: bid &- ask, trigger: e, emit)
        }

        @inline(__always)
        mutating func volumeSpike(_ b: Int, _ s: Int, _ e: Event, _ emit: (Event) -> Void) {
            let size = e.b
            guard size > 0 else { return }
            let t = e.eventTime.rawValue
            // Most trades fall in the current bucket: a compare, not a 64-bit division.
            if t >= volumes[s].bucketEnd {
                let width = volumes[s].bucketNanos
                // Floor division, so buckets before 1970 still line up.
                let bucket = t >= 0 ? t / width : (t &- width &+ 1) / width
                if volumes[s].bucket == Int64.min {
                    volumes[s].bucket = bucket
                } else {
                    volumes[s].closeBuckets(upTo: bucket)
                }
                volumes[s].bucketEnd = (bucket &+ 1) &* width
            }
            // A trade late into an earlier bucket counts in the current one: the spike is about what arrives now.
            volumes[s].volume &+= size
            let v = volumes[s]
            guard !v.firedThisBucket, v.count >= v.minBuckets, v.sum > 0 else { return }
            // volume ≥ factor × sum / count, exactly: volume × count × 10^8 ≥ factorE8 × sum.
            guard Int128(v.volume) * Int128(v.count) * Int128(FixedPoint.scale) >= Int128(v.factorE8) * Int128(v.sum) else { return }
            volumes[s].firedThisBucket = true
            let mean = v.sum / Int64(v.count)
            let threshold = Int64(Int128(v.factorE8) * Int128(v.sum) / (Int128(v.count) * Int128(FixedPoint.scale)))
            fire(b, code: .volumeSpike, value: v.volume, threshold: threshold, reference: mean, trigger: e, emit)
        }

        @inline(__always)
        mutating func updateTopOfBook(_ instrument: Int, _ e: Event) {
            quotes[instrument].bid = e.b > 0 ? e.a : 0
            quotes[instrument].ask = e.d > 0 ? e.c : 0
        }

        @inline(__always)
        mutating func tradeOutsideQuote(_ b: Int, _ instrument: Int, _ tolerance: Int64, _ e: Event, _ emit: (Event) -> Void) {
            let p = e.a
            guard p > 0 else { return }
            let q = quotes[instrument], tol = Int128(tolerance)
            if q.bid > 0 && Int128(p) * 10_000 < Int128(q.bid) * (10_000 - tol) {
                fire(b, code: .tradeOutsideQuote, value: p, threshold: Int64(Int128(q.bid) * (10_000 - tol) / 10_000),
                     reference: q.bid, trigger: e, emit)
            } else if q.ask > 0 && Int128(p) * 10_000 > Int128(q.ask) * (10_000 + tol) {
                fire(b, code: .tradeOutsideQuote, value: p, threshold: Int64((Int128(q.ask) * (10_000 + tol) + 9_999) / 10_000),
                     reference: q.ask, trigger: e, emit)
            }
        }

        // MARK: - First sight of a subject

        /// Resolves, once per subject, which rules apply to it. Only `MD.<VENUE>.<SYMBOL>.<TRADE|QUOTE>` subjects
        /// are bound: alerts never read alerts, so an `ALERT.>` subject fed back into the ring cannot loop.
        mutating func bind(_ id: SubjectID) {
            let index = Int(id)
            if index >= slots.count { slots.extend(to: index + 1, with: Slot()) }
            slots[index].status = Slot.ignored
            let text = subjects.text(id)
            let tokens = text.split(separator: ".", omittingEmptySubsequences: false)
            guard tokens.count == 4, tokens[0] == "MD", tokens[3] == "TRADE" || tokens[3] == "QUOTE" else { return }
            let kind: EventKind = tokens[3] == "TRADE" ? .trade : .quote
            let symbol = tokens[2]
            let siblingTrade = "MD.\(tokens[1]).\(symbol).TRADE"

            var slot = Slot(status: Slot.ignored, kind: kind.rawValue, firstBinding: Int32(bindings.count))
            func instrument() -> Int32 {
                let key = "\(tokens[1]).\(symbol)"
                if let i = instruments[key] { return i }
                let i = Int32(quotes.count)
                quotes.append(TopOfBook())
                instruments[key] = i
                return i
            }
            func alertSubject(_ code: AlertCode) -> SubjectID { subjects.intern(text: "ALERT.\(code.name).\(symbol)") }

            for rule in rules {
                if case .tradeOutsideQuote = rule.kind, kind == .quote, rule.subjects.matches(subjectText: siblingTrade) {
                    slot.tracksQuote = true
                    slot.instrument = instrument()
                    slot.status = Slot.bound
                }
                guard rule.kind.reads == kind, rule.subjects.matches(subjectText: text) else { continue }
                var binding = Binding(kind: .priceJump, state: 0, alertSubject: 0, cooldown: rule.cooldownNanos)
                switch rule.kind {
                case let .priceJump(bps, window):
                    binding.state = Int32(jumps.count)
                    binding.alertSubject = alertSubject(.priceJump)
                    jumps.append(JumpState(bps: bps, window: window))
                case let .crossedMarket(alertOnLocked):
                    binding.kind = .crossedMarket
                    binding.state = Int32(crosses.count)
                    binding.alertSubject = alertSubject(.crossed)
                    binding.alertSubject2 = alertSubject(.locked)
                    crosses.append(CrossState(alertOnLocked: alertOnLocked))
                case let .volumeSpike(bucketNanos, factorE8, minBuckets, lookback):
                    binding.kind = .volumeSpike
                    binding.state = Int32(volumes.count)
                    binding.alertSubject = alertSubject(.volumeSpike)
                    let history = UnsafeMutablePointer<Int64>.allocate(capacity: lookback)
                    history.initialize(repeating: 0, count: lookback)
                    volumes.append(VolumeState(bucketNanos: bucketNanos, factorE8: factorE8, minBuckets: minBuckets,
                                               lookback: lookback, history: history))
                case let .staleQuote(window):
                    binding.kind = .staleQuote
                    binding.state = Int32(stales.count)
                    binding.alertSubject = alertSubject(.staleQuote)
                    stales.append(StaleState(window: window, binding: Int32(bindings.count)))
                case let .tradeOutsideQuote(tolerance):
                    binding.kind = .tradeOutsideQuote
                    binding.state = Int32(outsides.count)
                    binding.alertSubject = alertSubject(.tradeOutsideQuote)
                    slot.instrument = instrument()
                    outsides.append(tolerance)
                }
                bindings.append(binding)
                slot.bindingCount += 1
                slot.status = Slot.bound
            }
            slots[index] = slot
        }
    }
}

extension AlertEngine.StaleState {
    @inline(__always)
    mutating func quoted(_ e: Event) {
        lastKnown = e.knownTime.rawValue
        lastEvent = e.eventTime.rawValue
        source = e.source
        armed = true
    }
}

extension AlertEngine.VolumeState {
    /// Moves the finished bucket and any empty buckets since into the history, then starts `next`.
    mutating func closeBuckets(upTo next: Int64) {
        push(volume)
        // Empty buckets in between count as zero volume; more than `lookback` of them leave only zeros.
        let empties = Swift.min(next &- bucket &- 1, Int64(lookback))
        var i: Int64 = 0
        while i < empties { push(0); i += 1 }
        bucket = next
        volume = 0
        firedThisBucket = false
    }

    @inline(__always)
    mutating func push(_ v: Int64) {
        if count == lookback {
            sum &-= history[head]
            history[head] = v
            head = head + 1 == lookback ? 0 : head + 1
        } else {
            history[(head + count) % lookback] = v
            count += 1
        }
        sum &+= v
    }
}

/// A monotonic deque of (event time, price): the front is the window's minimum (or maximum), so the extreme
/// of a sliding window costs amortised O(1) per trade. A ring buffer of interleaved pairs (one cache line holds
/// four) that doubles when full.
struct PriceWindow: BitwiseCopyable {
    struct Entry: BitwiseCopyable { var time: Int64; var price: Int64 }
    var entries: UnsafeMutablePointer<Entry>
    var mask: Int
    var head = 0
    var count = 0

    init(capacity: Int = 16) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0)
        entries = .allocate(capacity: capacity)
        mask = capacity - 1
    }

    func deallocate() { entries.deallocate() }

    var frontPrice: Int64? { count == 0 ? nil : entries[head].price }

    @inline(__always)
    mutating func evict(before horizon: Int64) {
        while count > 0 && entries[head].time < horizon { head = (head + 1) & mask; count -= 1 }
    }

    /// Appends, first dropping every entry at or above `price` (they can no longer be the minimum).
    @inline(__always)
    mutating func pushMin(time: Int64, price: Int64) {
        while count > 0 && entries[(head + count - 1) & mask].price >= price { count -= 1 }
        append(Entry(time: time, price: price))
    }

    /// Appends, first dropping every entry at or below `price`.
    @inline(__always)
    mutating func pushMax(time: Int64, price: Int64) {
        while count > 0 && entries[(head + count - 1) & mask].price <= price { count -= 1 }
        append(Entry(time: time, price: price))
    }

    @inline(__always)
    mutating func append(_ entry: Entry) {
        if count > mask { grow() }
        entries[(head + count) & mask] = entry
        count += 1
    }

    mutating func grow() {
        let capacity = (mask + 1) * 2
        let bigger = UnsafeMutablePointer<Entry>.allocate(capacity: capacity)
        for i in 0..<count { bigger[i] = entries[(head + i) & mask] }
        entries.deallocate()
        entries = bigger; mask = capacity - 1; head = 0
    }
}
