"""The SDL of the GitHub GraphQL subset the emulator serves (see ``github_graphql``): the
types and fields a changeset syncer selects (``SDL``) and the mutations the reconciler sends
(``MUTATION_SDL``, resolved in ``github_mutations``), named and typed as in GitHub's public
schema. ``tests/conformance`` checks that both are a subset of the public schema's excerpt in
``tests/conformance/specs/github.graphql`` (same types, fields, argument and input types)."""

from __future__ import annotations

SDL = """
scalar DateTime
scalar URI
scalar GitObjectID

enum PullRequestState { OPEN CLOSED MERGED }
enum PullRequestReviewDecision { APPROVED CHANGES_REQUESTED REVIEW_REQUIRED }
enum PullRequestReviewState { PENDING COMMENTED APPROVED CHANGES_REQUESTED DISMISSED }
enum StatusState { EXPECTED ERROR FAILURE PENDING SUCCESS }
enum PullRequestTimelineItemsItemType {
  PULL_REQUEST_REVIEW CLOSED_EVENT MERGED_EVENT REOPENED_EVENT
}

interface Actor { login: String! }
type User implements Actor { login: String! }

type Query {
  repository(owner: String!, name: String!, followRenames: Boolean = true): Repository
  rateLimit(dryRun: Boolean = false): RateLimit
}

type RateLimit { cost: Int! limit: Int! remaining: Int! used: Int! resetAt: DateTime! }

type Repository {
  id: ID!
  databaseId: Int
  name: String!
  nameWithOwner: String!
  isArchived: Boolean!
  isFork: Boolean!
  isPrivate: Boolean!
  url: URI!
  pullRequest(number: Int!): PullRequest
}

type PageInfo {
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
  startCursor: String
  endCursor: String
}

type PullRequest {
  id: ID!
  number: Int!
  title: String!
  body: String!
  url: URI!
  state: PullRequestState!
  isDraft: Boolean!
  additions: Int!
  deletions: Int!
  headRefName: String!
  baseRefName: String!
  createdAt: DateTime!
  updatedAt: DateTime!
  closedAt: DateTime
  mergedAt: DateTime
  reviewDecision: PullRequestReviewDecision
  latestOpinionatedReviews(
    first: Int, last: Int, writersOnly: Boolean = false
  ): PullRequestReviewConnection
  author: Actor
  repository: Repository!
  commits(first: Int, last: Int): PullRequestCommitConnection!
  timelineItems(
    first: Int, last: Int, itemTypes: [PullRequestTimelineItemsItemType!]
  ): PullRequestTimelineItemsConnection!
}

type PullRequestReviewConnection { nodes: [PullRequestReview] totalCount: Int! }
type PullRequestCommitConnection { nodes: [PullRequestCommit] totalCount: Int! }
type PullRequestCommit { commit: Commit! }
type Commit { oid: GitObjectID! statusCheckRollup: StatusCheckRollup }
type StatusCheckRollup { state: StatusState! }

type PullRequestReview {
  id: ID!
  state: PullRequestReviewState!
  author: Actor
  submittedAt: DateTime
}
type ClosedEvent { id: ID! createdAt: DateTime! actor: Actor }
type MergedEvent { id: ID! createdAt: DateTime! actor: Actor }
type ReopenedEvent { id: ID! createdAt: DateTime! actor: Actor }
union PullRequestTimelineItems = PullRequestReview | ClosedEvent | MergedEvent | ReopenedEvent

type PullRequestTimelineItemsConnection {
  nodes: [PullRequestTimelineItems]
  totalCount: Int!
  pageInfo: PageInfo!
}
"""

MUTATION_SDL = """
type Mutation {
  markPullRequestReadyForReview(
    input: MarkPullRequestReadyForReviewInput!
  ): MarkPullRequestReadyForReviewPayload
  convertPullRequestToDraft(
    input: ConvertPullRequestToDraftInput!
  ): ConvertPullRequestToDraftPayload
}
input MarkPullRequestReadyForReviewInput { clientMutationId: String pullRequestId: ID! }
type MarkPullRequestReadyForReviewPayload { clientMutationId: String pullRequest: PullRequest }
input ConvertPullRequestToDraftInput { clientMutationId: String pullRequestId: ID! }
type ConvertPullRequestToDraftPayload { clientMutationId: String pullRequest: PullRequest }
"""
