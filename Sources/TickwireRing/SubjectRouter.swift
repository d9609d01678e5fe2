#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import TickwireCore

/// Finds every subscription whose patterns match a published subject.
///
/// Subscriptions are a trie over pattern tokens (a literal edge per token, one `*` child and one `>` set per
/// node), flattened into arrays and never mutated once built. `add` and `remove` (any thread, under a lock)
/// build a new trie and swap it in; the matching thread picks the new one up at its next `match` by comparing
/// one atomic generation number, so matching takes no lock. The matching thread keeps a bounded,
/// direct-mapped cache from `SubjectID` to the matching subscriptions; a hit costs one compare and no
/// allocation, and a new generation empties it.
///
/// Threads: `withMatches` / `match` from one thread at a time (the ring consumer that routes); `add`, `remove`
/// and the counters from any thread.
public final class SubjectRouter<ID: Hashable & Sendable>: @unchecked Sendable {
    private struct Writer {
        var patterns: [ID: Set<SubjectPattern>] = [:]
        var order: [ID] = []
        var trie = RouterTrie([])
        var ids: ContiguousArray<ID> = []
        var generation: UInt64 = 0
    }
    private let writer = Locked(Writer())
    @usableFromInline let published = Atomic<UInt64>(0)

    // Matching-thread state. Held behind pointers and `let`s so the hot path pays no exclusivity checks, and
    // reached from `@inlinable` code so it is specialized for `ID` in the caller's module.
    @usableFromInline let cacheMask: Int
    @usableFromInline let cacheKeys: UnsafeMutablePointer<SubjectID>
    @usableFromInline let cacheValues: UnsafeMutablePointer<ContiguousArray<ID>>
    @usableFromInline let seenGeneration: UnsafeMutablePointer<UInt64>
    @usableFromInline let currentIDs: UnsafeMutablePointer<ContiguousArray<ID>>
    @usableFromInline let matcher = RouterMatcher()
    @usableFromInline let hitCount = Atomic<UInt64>(0)
    @usableFromInline let missCount = Atomic<UInt64>(0)

    @usableFromInline static var emptyKey: SubjectID { .max }

    /// - Parameter cacheCapacity: cached subjects, rounded up to a power of two. Subject ids are dense, so a
    ///   direct-mapped cache indexed by id holds every hot subject until there are more than this many.
    public init(cacheCapacity: Int = 4096) {
        var c = 1
        while c < max(1, cacheCapacity) { c <<= 1 }
        cacheMask = c - 1
        cacheKeys = .allocate(capacity: c)
        cacheKeys.initialize(repeating: SubjectRouter.emptyKey, count: c)
        cacheValues = .allocate(capacity: c)
        cacheValues.initialize(repeating: [], count: c)
        seenGeneration = .allocate(capacity: 1)
        seenGeneration.initialize(to: 0)
        currentIDs = .allocate(capacity: 1)
        currentIDs.initialize(to: [])
    }

    deinit {
        cacheKeys.deallocate()
        cacheValues.deinitialize(count: cacheMask + 1)
        cacheValues.deallocate()
        seenGeneration.deallocate()
        currentIDs.deinitialize(count: 1)
        currentIDs.deallocate()
    }

    // MARK: - Subscriptions (any thread)

    /// Adds `pattern` to `subscription`'s patterns (creating the subscription).
    public func add(pattern: SubjectPattern, subscription: ID) { add(patterns: [pattern], subscription: subscription) }

    /// Adds several patterns to `subscription` with one rebuild.
    /// - Complexity: O(all patterns): the trie is rebuilt.
    public func add(patterns: [SubjectPattern], subscription: ID) {
        modify { w in
            if w.patterns[subscription] == nil { w.order.append(subscription) }
            w.patterns[subscription, default: []].formUnion(patterns)
        }
    }

    /// Adds many subscriptions with one rebuild.
    public func add(_ subscriptions: [(ID, [SubjectPattern])]) {
        modify { w in
            for (id, patterns) in subscriptions {
                if w.patterns[id] == nil { w.order.append(id) }
                w.patterns[id, default: []].formUnion(patterns)
            }
        }
    }

    /// Removes `subscription` and all its patterns.
    public func remove(subscription: ID) {
        modify { w in
            guard w.patterns.removeValue(forKey: subscription) != nil else { return }
            w.order.removeAll { $0 == subscription }
        }
    }

    /// Removes one pattern of `subscription`; the subscription goes when its last pattern does.
    public func remove(pattern: SubjectPattern, subscription: ID) {
        modify { w in
            guard var set = w.patterns[subscription], set.remove(pattern) != nil else { return }
            if set.isEmpty {
                w.patterns.removeValue(forKey: subscription)
                w.order.removeAll { $0 == subscription }
            } else {
                w.patterns[subscription] = set
            }
        }
    }

    private func modify(_ change: (inout Writer) -> Void) {
        writer.withLock { w in
            change(&w)
            w.trie = RouterTrie(w.order.map { Array(w.patterns[$0]!) })
            w.ids = ContiguousArray(w.order)
            w.generation &+= 1
            published.store(w.generation, ordering: .releasing)
        }
    }

    /// Subscriptions currently added.
    public var subscriptionCount: Int { writer.withLock { $0.order.count } }

    /// Patterns across all subscriptions.
    public var patternCount: Int { writer.withLock { w in w.patterns.values.reduce(0) { $0 + $1.count } } }

    /// Matches answered from the cache and matches that walked the trie.
    public var cacheStats: (hits: UInt64, misses: UInt64) {
        (hitCount.load(ordering: .relaxed), missCount.load(ordering: .relaxed))
    }

    // MARK: - Matching (one thread)

    /// Calls `body` with the subscriptions matching the subject `subjectID`, whose text is `text` (read only on
    /// a cache miss). Each subscription appears once, however many of its patterns match.
    /// - warning: the buffer is valid only inside `body`; call from one thread at a time.
    /// - Complexity: a cache hit is O(1) with no allocation; a miss walks the trie, O(tokens × wildcard
    ///   branches + matches), and stores the result (one allocation).
    @inlinable
    public func withMatches<R>(subjectID: SubjectID, text: UnsafeRawBufferPointer,
                               _ body: (UnsafeBufferPointer<ID>) throws -> R) rethrows -> R {
        if published.load(ordering: .acquiring) != seenGeneration.pointee { refresh() }
        let slot = Int(subjectID) & cacheMask
        if cacheKeys[slot] == subjectID && subjectID != SubjectRouter.emptyKey {
            hitCount.store(hitCount.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
            return try cacheValues[slot].withUnsafeBufferPointer(body)
        }
        missCount.store(missCount.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
        cacheKeys[slot] = subjectID
        cacheValues[slot] = collect(text)
        return try cacheValues[slot].withUnsafeBufferPointer(body)
    }

    /// `withMatches` for a subject interned in `subjects`: its text is looked up only on a cache miss.
    @inlinable
    public func withMatches<R>(subjectID: SubjectID, subjects: SubjectTable,
                               _ body: (UnsafeBufferPointer<ID>) throws -> R) rethrows -> R {
        if published.load(ordering: .acquiring) == seenGeneration.pointee {
            let slot = Int(subjectID) & cacheMask
            if cacheKeys[slot] == subjectID && subjectID != SubjectRouter.emptyKey {
                hitCount.store(hitCount.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
                return try cacheValues[slot].withUnsafeBufferPointer(body)
            }
        }
        return try withMatches(subjectID: subjectID, text: subjects.entry(subjectID), body)
    }

    /// The subscriptions matching `subjectID` (text `text`): `withMatches` copied out.
    public func match(subjectID: SubjectID, text: String) -> [ID] {
        var t = text
        return t.withUTF8 { utf8 in
            withMatches(subjectID: subjectID, text: UnsafeRawBufferPointer(utf8)) { Array($0) }
        }
    }

    /// Matches without the cache. For tests.
    public func matchUncached(text: String) -> [ID] {
        if published.load(ordering: .acquiring) != seenGeneration.pointee { refresh() }
        var t = text
        return t.withUTF8 { Array(collect(UnsafeRawBufferPointer($0))) }
    }

    @inlinable
    func collect(_ text: UnsafeRawBufferPointer) -> ContiguousArray<ID> {
        let n = matcher.collect(text)
        let found = matcher.found
        return currentIDs.pointee.withUnsafeBufferPointer { ids in
            ContiguousArray(unsafeUninitializedCapacity: n) { out, count in
                for i in 0..<n { (out.baseAddress! + i).initialize(to: ids[Int(found[i])]) }
                count = n
            }
        }
    }

    /// Takes the latest trie and empties the cache: runs once per change to the subscriptions.
    @usableFromInline
    func refresh() {
        let (trie, ids, generation) = writer.withLock { ($0.trie, $0.ids, $0.generation) }
        matcher.use(trie)
        currentIDs.pointee = ids
        seenGeneration.pointee = generation
        for i in 0...cacheMask { cacheKeys[i] = SubjectRouter.emptyKey; cacheValues[i] = [] }
    }
}

/// The matching thread's scratch space: the current trie, and marks that make each subscription appear once.
@usableFromInline
final class RouterMatcher {
    private var trie = RouterTrie([])
    private var marks = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    @usableFromInline private(set) var found = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
    private var capacity = 1
    private var epoch: UInt32 = 0

    init() { marks.initialize(to: 0) }

    deinit {
        marks.deallocate()
        found.deallocate()
    }

    func use(_ trie: RouterTrie) {
        self.trie = trie
        if trie.subscriptionCount > capacity {
            marks.deallocate(); found.deallocate()
            capacity = trie.subscriptionCount
            marks = .allocate(capacity: capacity)
            found = .allocate(capacity: capacity)
        }
        marks.initialize(repeating: 0, count: capacity)
        epoch = 0
    }

    /// Walks the trie for `text`; leaves the distinct matching subscription indexes in `found[0..<n]`.
    @usableFromInline
    func collect(_ text: UnsafeRawBufferPointer) -> Int {
        epoch &+= 1
        if epoch == 0 {
            marks.update(repeating: 0, count: capacity)
            epoch = 1
        }
        let epoch = self.epoch, marks = self.marks, found = self.found
        var n = 0
        trie.walk(text) { sub in
            if marks[Int(sub)] != epoch {
                marks[Int(sub)] = epoch
                found[n] = sub
                n &+= 1
            }
        }
        return n
    }
}

/// An immutable, flattened subscription trie.
final class RouterTrie: @unchecked Sendable {
    struct Node {
        var star: Int32 = -1
        var terminal: Range<Int32> = 0..<0   // subscriptions whose pattern ends here
        var rest: Range<Int32> = 0..<0       // subscriptions whose pattern ends here with `>`
    }
    let subscriptionCount: Int
    private let nodes: [Node]
    private let subs: [Int32]
    // Literal edges: open addressing keyed by (parent, token hash); the token bytes confirm a hit.
    private let edgeKey: [UInt64]
    private let edgeParent: [Int32]
    private let edgeChild: [Int32]
    private let edgeTokenStart: [Int32]
    private let edgeTokenLength: [Int32]
    private let tokenBytes: [UInt8]
    private let edgeMask: Int

    /// - Parameter subscriptions: each subscription's patterns; a subscription is known by its index here.
    init(_ subscriptions: [[SubjectPattern]]) {
        subscriptionCount = subscriptions.count
        // Built in locals, then frozen into `let`s: the matcher reads them with no exclusivity checks.
        var nodes = [Node()]
        var subs: [Int32] = []
        var tokenBytes: [UInt8] = []
        // Build with dictionaries, then flatten.
        let root = BuildNode()
        for (index, patterns) in subscriptions.enumerated() {
            for pattern in patterns {
                var node = root
                var endedWithRest = false
                for token in pattern.tokens {
                    switch token {
                    case .literal(let s):
                        if let child = node.literal[s] { node = child } else {
                            let child = BuildNode(); node.literal[s] = child; node = child
                        }
                    case .one:
                        if let child = node.star { node = child } else {
                            let child = BuildNode(); node.star = child; node = child
                        }
                    case .rest:
                        node.rest.append(Int32(index)); endedWithRest = true
                    }
                }
                if !endedWithRest { node.terminal.append(Int32(index)) }
            }
        }
        var edges: [(parent: Int32, token: String, child: Int32)] = []
        var queue: [(BuildNode, Int32)] = [(root, 0)]
        var head = 0
        while head < queue.count {
            let (b, index) = queue[head]; head += 1
            let t0 = Int32(subs.count); subs += b.terminal
            let r0 = Int32(subs.count); subs += b.rest
            nodes[Int(index)].terminal = t0..<r0
            nodes[Int(index)].rest = r0..<Int32(subs.count)
            for (token, child) in b.literal.sorted(by: { $0.key < $1.key }) {
                let ci = Int32(nodes.count); nodes.append(Node())
                edges.append((index, token, ci)); queue.append((child, ci))
            }
            if let star = b.star {
                let ci = Int32(nodes.count); nodes.append(Node())
                nodes[Int(index)].star = ci
                queue.append((star, ci))
            }
        }
        var size = 16
        while size < edges.count * 2 { size <<= 1 }
        let edgeMask = size - 1
        var edgeKey = [UInt64](repeating: 0, count: size)
        var edgeParent = [Int32](repeating: -1, count: size)
        var edgeChild = [Int32](repeating: -1, count: size)
        var edgeTokenStart = [Int32](repeating: 0, count: size)
        var edgeTokenLength = [Int32](repeating: 0, count: size)
        for edge in edges {
            let bytes = Array(edge.token.utf8)
            let key = bytes.withUnsafeBytes { RouterTrie.edgeHash(parent: edge.parent, token: $0) }
            var i = Int(truncatingIfNeeded: key) & edgeMask
            while edgeParent[i] >= 0 { i = (i + 1) & edgeMask }
            edgeKey[i] = key; edgeParent[i] = edge.parent; edgeChild[i] = edge.child
            edgeTokenStart[i] = Int32(tokenBytes.count); edgeTokenLength[i] = Int32(bytes.count)
            tokenBytes += bytes
        }
        self.nodes = nodes; self.subs = subs; self.tokenBytes = tokenBytes; self.edgeMask = edgeMask
        self.edgeKey = edgeKey; self.edgeParent = edgeParent; self.edgeChild = edgeChild
        self.edgeTokenStart = edgeTokenStart; self.edgeTokenLength = edgeTokenLength
    }

    @inline(__always)
    static func edgeHash(parent: Int32, token: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ (UInt64(UInt32(bitPattern: parent)) &* 0x9E37_79B9_7F4A_7C15)
        for b in token { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h ^ (h >> 29)
    }

    @inline(__always)
    private func child(of parent: Int32, token: UnsafeRawBufferPointer) -> Int32 {
        let key = RouterTrie.edgeHash(parent: parent, token: token)
        var i = Int(truncatingIfNeeded: key) & edgeMask
        while true {
            let p = edgeParent[i]
            if p < 0 { return -1 }
            if edgeKey[i] == key && p == parent && Int(edgeTokenLength[i]) == token.count {
                let start = Int(edgeTokenStart[i])
                let same = tokenBytes.withUnsafeBytes { all in
                    token.count == 0 || memcmp(all.baseAddress! + start, token.baseAddress!, token.count) == 0
                }
                if same { return edgeChild[i] }
            }
            i = (i + 1) & edgeMask
        }
    }

    /// Calls `found` with the index of every subscription with a pattern matching `text` (repeats possible).
    func walk(_ text: UnsafeRawBufferPointer, _ found: (Int32) -> Void) {
        // Token boundaries: at most 16 tokens in a valid subject.
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: 34) { bounds in
            var count = 0
            var start = 0
            for i in 0...text.count where i == text.count || text[i] == UInt8(ascii: ".") {
                if count == 17 { return }   // not a valid subject; matches nothing
                bounds[2 * count] = Int32(start); bounds[2 * count + 1] = Int32(i)
                count += 1; start = i + 1
            }
            // Depth-first over (node, token index); each step pushes at most two.
            withUnsafeTemporaryAllocation(of: (Int32, Int32).self, capacity: 64) { stack in
                var top = 0
                stack[0] = (0, 0); top = 1
                while top > 0 {
                    top -= 1
                    let (node, depth) = stack[top]
                    let n = nodes[Int(node)]
                    if Int(depth) == count {
                        for i in n.terminal { found(subs[Int(i)]) }
                        continue
                    }
                    for i in n.rest { found(subs[Int(i)]) }
                    let token = UnsafeRawBufferPointer(rebasing: text[Int(bounds[2 * Int(depth)])..<Int(bounds[2 * Int(depth) + 1])])
                    let c = child(of: node, token: token)
                    if c >= 0 && top < 64 { stack[top] = (c, depth + 1); top += 1 }
                    if n.star >= 0 && top < 64 { stack[top] = (n.star, depth + 1); top += 1 }
                }
            }
        }
    }
}

/// A trie node while building; flattened into `RouterTrie.Node`.
private final class BuildNode {
    var literal: [String: BuildNode] = [:]
    var star: BuildNode?
    var terminal: [Int32] = []
    var rest: [Int32] = []
}
