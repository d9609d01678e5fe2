import Foundation
import Synchronization
import Testing
import TickwireTestSupport
import TickwireCore
@testable import TickwireRing

@Suite(.serialized, .timeLimit(.minutes(5)))
struct SubjectRouterTests {
    @Test func matchesLiteralsStarsAndTails() throws {
        let router = SubjectRouter<Int>()
        router.add(pattern: try SubjectPattern("MD.XNAS.AAPL.TRADE"), subscription: 1)
        router.add(pattern: try SubjectPattern("MD.XNAS.*.TRADE"), subscription: 2)
        router.add(pattern: try SubjectPattern("MD.>"), subscription: 3)
        router.add(pattern: try SubjectPattern(">"), subscription: 4)
        router.add(patterns: [try SubjectPattern("MD.*.AAPL.*"), try SubjectPattern("MD.XNAS.AAPL.>")], subscription: 5)
        #expect(Set(router.match(subjectID: 0, text: "MD.XNAS.AAPL.TRADE")) == [1, 2, 3, 4, 5])
        #expect(router.match(subjectID: 0, text: "MD.XNAS.AAPL.TRADE").count == 5)   // 5 once, though two patterns match
        #expect(Set(router.match(subjectID: 1, text: "MD.XNAS.MSFT.QUOTE")) == [3, 4])
        #expect(Set(router.match(subjectID: 2, text: "MD")) == [4])                  // `>` needs one token or more
        #expect(Set(router.match(subjectID: 3, text: "ALERT.PRICE_JUMP.AAPL")) == [4])
        #expect(Set(router.match(subjectID: 4, text: "MD.XNAS.AAPL")) == [3, 4])     // `*` is exactly one token
    }

    @Test func cachedMatchesAreInvalidatedByAddAndRemove() throws {
        let router = SubjectRouter<String>(cacheCapacity: 8)
        router.add(pattern: try SubjectPattern("A.*"), subscription: "x")
        #expect(router.match(subjectID: 7, text: "A.B") == ["x"])
        #expect(router.match(subjectID: 7, text: "A.B") == ["x"])
        #expect(router.cacheStats == (hits: 1, misses: 1))
        router.add(pattern: try SubjectPattern("A.B"), subscription: "y")
        #expect(Set(router.match(subjectID: 7, text: "A.B")) == ["x", "y"])
        router.remove(subscription: "x")
        #expect(router.match(subjectID: 7, text: "A.B") == ["y"])
        router.remove(pattern: try SubjectPattern("A.B"), subscription: "y")
        #expect(router.match(subjectID: 7, text: "A.B") == [])
        #expect(router.subscriptionCount == 0)
        // A colliding id in a direct-mapped slot replaces the entry; answers stay right.
        router.add(pattern: try SubjectPattern("C.>"), subscription: "z")
        #expect(router.match(subjectID: 1, text: "C.D") == ["z"])
        #expect(router.match(subjectID: 9, text: "E.F") == [])
        #expect(router.match(subjectID: 1, text: "C.D") == ["z"])
    }

    /// The trie against `SubjectPattern.matches` on random subjects and patterns, cached and uncached.
    @Test(arguments: [1, 2, 3])
    func agreesWithTheBruteForceMatcher(seed: UInt64) throws {
        var rng = SplitMix(seed: seed)
        let alphabet = ["MD", "XNAS", "AAPL", "MSFT", "TRADE", "QUOTE", "A", "B-1", "c_2", "LONGER-TOKEN-NAME-HERE"]
        func subject() -> String {
            (0..<Int.random(in: 1...6, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }.joined(separator: ".")
        }
        func pattern() -> String {
            let n = Int.random(in: 1...6, using: &rng)
            return (0..<n).map { i in
                let r = Int.random(in: 0..<10, using: &rng)
                if i == n - 1 && r == 0 { return ">" }
                return r < 3 ? "*" : alphabet.randomElement(using: &rng)!
            }.joined(separator: ".")
        }
        let router = SubjectRouter<Int>(cacheCapacity: 64)
        var subscriptions: [Int: [SubjectPattern]] = [:]
        for id in 0..<150 {
            let ps = try (0..<Int.random(in: 1...4, using: &rng)).map { _ in try SubjectPattern(pattern()) }
            subscriptions[id] = ps
        }
        router.add(subscriptions.map { ($0.key, $0.value) })
        let subjects = (0..<200).map { _ in subject() }
        for round in 0..<2 {
            for (i, s) in subjects.enumerated() {
                let expected = Set(subscriptions.filter { $0.value.contains { $0.matches(subjectText: s) } }.keys)
                let got = router.match(subjectID: SubjectID(i), text: s)
                #expect(Set(got) == expected, "round \(round) subject \(s)")
                #expect(got.count == expected.count)
                #expect(Set(router.matchUncached(text: s)) == expected)
            }
            // Change a third of the subscriptions, then check again.
            for id in 0..<50 {
                router.remove(subscription: id)
                subscriptions[id] = nil
            }
        }
    }

    /// Adds and removes on one thread while another matches: every answer is the full set of some generation
    /// of the subscriptions (here: the stable subscription is always present, churned ones come and go).
    @Test func subscriptionsChangeWhileAnotherThreadMatches() throws {
        let router = SubjectRouter<Int>(cacheCapacity: 16)
        router.add(pattern: try SubjectPattern("MD.*.AAPL.TRADE"), subscription: 0)
        let stop = Atomic<Bool>(false)
        let bad = Shared(0)
        let matcher = TestThread {
            var wrong = 0
            var n = 0
            while !stop.load(ordering: .relaxed) && n < 2_000_000 {
                n += 1
                let ids = router.match(subjectID: SubjectID(n % 4), text: n % 2 == 0 ? "MD.XNAS.AAPL.TRADE" : "MD.ARCA.AAPL.TRADE")
                if !ids.contains(0) || Set(ids).count != ids.count { wrong += 1 }
            }
            bad.with { $0 = wrong }
        }
        let pattern = try SubjectPattern("MD.XNAS.>")
        for round in 0..<300 {
            router.add(pattern: pattern, subscription: 1 + round % 7)
            if round % 3 == 0 { router.remove(subscription: 1 + (round / 3) % 7) }
        }
        stop.store(true, ordering: .relaxed)
        matcher.join()
        #expect(bad.get == 0)
        let final = Set(router.match(subjectID: 100, text: "MD.XNAS.AAPL.TRADE"))
        #expect(final.contains(0))
    }
}

