import Dispatch
import Synchronization
import TickwireCore
import TickwireRing

/// One in-process subscription: its patterns, the handler the hub calls, and its counters.
public final class InProcessSubscription: Sendable {
    public let id: Int
    public let name: String
    public let patterns: [SubjectPattern]
    let handler: @Sendable (Event) -> Void
    let deliveredCount = Atomic<UInt64>(0)
    let gapCount = Atomic<UInt64>(0)

    /// Counts one event handed over (`gap`: a GAP notice). Called by the hub's thread alone, so a relaxed load
    /// and store, not a read-modify-write: readers elsewhere see each count whole, and the hub pays no locked
    /// instruction per event and subscription.
    @inline(__always)
    func countDelivered(gap: Bool = false) {
        deliveredCount.store(deliveredCount.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
        if gap { gapCount.store(gapCount.load(ordering: .relaxed) &+ 1, ordering: .relaxed) }
    }

    init(id: Int, name: String, patterns: [SubjectPattern], handler: @escaping @Sendable (Event) -> Void) {
        self.id = id; self.name = name; self.patterns = patterns; self.handler = handler
    }

    /// Events handed to this subscription (GAP notices included).
    public var delivered: UInt64 { deliveredCount.load(ordering: .relaxed) }
    /// GAP notices received: times the hub was lapped while this subscription existed.
    public var gaps: UInt64 { gapCount.load(ordering: .relaxed) }
}

/// Fans the ring out to in-process subscriptions through the subject router: one lossy ring consumer, one
/// thread, every event matched once (cached per subject) and handed to each matching subscription.
///
/// Handlers run on the hub's thread and must be quick; a slow one makes the hub lag, and a hub lapped by the
/// producer delivers a GAP (to every subscription: the lost range is in publisher sequences, and any of them may
/// have matched) followed by the last-value cache's entries, which are routed like any event. The feed itself
/// never waits for the hub.
///
/// The hub's ring consumer exists only while there are subscriptions: the first `subscribe` attaches it (so a
/// subscription sees every event published after `subscribe` returns), and the hub thread removes it when the
/// last one goes. A daemon without in-process subscribers pays nothing for the hub, not even wake-ups.
public final class SubscriptionHub: @unchecked Sendable {
    static let consumerName = "in-process-hub"
    let router = SubjectRouter<Int>()
    let subjects: SubjectTable
    let ring: BroadcastRing
    let gapSubject: SubjectID
    private struct Registry {
        var subscriptions: [Int: InProcessSubscription] = [:]
        var consumer: RingConsumer?
    }
    /// A pthread mutex, not `Synchronization.Mutex`: ThreadSanitizer sees this one order the accesses it guards.
    private let registry = Locked(Registry())
    private let attached = DispatchSemaphore(value: 0)
    private let version = Atomic<UInt64>(0)
    private let nextID = Atomic<Int>(1)
    // The hub thread's view of the registry, refreshed when `version` moves.
    private var local: [Int: InProcessSubscription] = [:]
    private var localVersion: UInt64 = .max
    private var all: [InProcessSubscription] = []

    public init(ring: BroadcastRing, subjects: SubjectTable, gapSubject: SubjectID) {
        self.ring = ring
        self.subjects = subjects
        self.gapSubject = gapSubject
    }

    /// Adds a subscription while the feed runs. - Returns: the subscription, whose counters may be read anywhere.
    @discardableResult
    public func subscribe(name: String, patterns: [SubjectPattern], handler: @escaping @Sendable (Event) -> Void) -> InProcessSubscription {
        subscribe([(name, patterns, handler)])[0]
    }

    /// Adds many subscriptions with one router rebuild (a desk's traders joining at once).
    @discardableResult
    public func subscribe(_ many: [(name: String, patterns: [SubjectPattern], handler: @Sendable (Event) -> Void)]) -> [InProcessSubscription] {
        let subs = many.map { m in
            InProcessSubscription(id: nextID.add(1, ordering: .relaxed).oldValue, name: m.name, patterns: m.patterns, handler: m.handler)
        }
        router.add(subs.map { ($0.id, $0.patterns) })
        let attachedNow = registry.withLock { r in
            for sub in subs { r.subscriptions[sub.id] = sub }
            guard r.consumer == nil, !r.subscriptions.isEmpty else { return false }
            r.consumer = ring.addConsumer(name: Self.consumerName, policy: .lossy, wait: .park)
            return true
        }
        version.add(1, ordering: .releasing)
        if attachedNow { attached.signal() }
        return subs
    }

    /// Removes a subscription while the feed runs; its handler is not called after the hub's next event.
    public func unsubscribe(_ sub: InProcessSubscription) {
        router.remove(subscription: sub.id)
        registry.withLock { _ = $0.subscriptions.removeValue(forKey: sub.id) }
        version.add(1, ordering: .releasing)
    }

    public var subscriptions: [InProcessSubscription] { registry.withLock { Array($0.subscriptions.values) }.sorted { $0.id < $1.id } }

    /// The hub's ring consumer's counters, while it is attached.
    public var consumerCounters: ConsumerCounters? { registry.withLock { $0.consumer?.counters } }

    /// Routes `event` to every matching subscription. Called on the hub thread only.
    func route(_ event: Event) {
        refresh()
        if event.kind == .gap && event.subjectID == gapSubject {
            for sub in all {
                sub.handler(event)
                sub.countDelivered(gap: true)
            }
            return
        }
        router.withMatches(subjectID: event.subjectID, text: subjects.entry(event.subjectID)) { ids in
            for id in ids {
                guard let sub = local[id] else { continue }   // removed since the router snapshot
                sub.handler(event)
                sub.countDelivered()
            }
        }
    }

    private func refresh() {
        let v = version.load(ordering: .acquiring)
        guard v != localVersion else { return }
        local = registry.withLock { $0.subscriptions }
        all = Array(local.values)
        localVersion = v
    }

    /// The hub thread: drains the ring into the subscriptions while there are any, sleeps while there are none,
    /// and returns when the ring closes.
    func run() {
        while !ring.isClosed {
            guard let consumer = registry.withLock({ $0.consumer }) else {
                _ = attached.wait(timeout: .now() + .milliseconds(100))
                continue
            }
            while consumer.poll(maxBatch: 256, timeoutNanos: 100_000_000, { route($0) }) >= 0 {
                refresh()
                guard all.isEmpty else { continue }
                // Detach only if no subscription arrived since the snapshot; one that did keeps this consumer.
                let detached = registry.withLock { r in
                    guard r.subscriptions.isEmpty else { return false }
                    ring.removeConsumer(consumer)
                    r.consumer = nil
                    return true
                }
                if detached { break }
            }
        }
    }

    /// Wakes a hub thread waiting for its first subscription (the daemon calls it after closing the ring).
    func wake() { attached.signal() }
}
