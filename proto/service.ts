// The gRPC service for proto/feed.proto, for @grpc/grpc-js, with protobuf-es doing the (de)serialising.
// grpc-tools' generated stubs need a protoc binary download, which this project avoids.

import { fromBinary, toBinary } from '@bufbuild/protobuf';
import type * as grpc from '@grpc/grpc-js';
import {
  type ClientHello,
  ClientHelloSchema,
  type ServerMessage,
  ServerMessageSchema,
} from './gen/feed_pb.ts';

export * from './gen/feed_pb.ts';

export const FEED_SYNC_PATH = '/fedmesh.feed.v1.Feed/Sync';

export const feedServiceDefinition = {
  sync: {
    path: FEED_SYNC_PATH,
    requestStream: false,
    responseStream: true,
    requestSerialize: (m: ClientHello) => Buffer.from(toBinary(ClientHelloSchema, m)),
    requestDeserialize: (b: Buffer) => fromBinary(ClientHelloSchema, b),
    responseSerialize: (m: ServerMessage) => Buffer.from(toBinary(ServerMessageSchema, m)),
    responseDeserialize: (b: Buffer) => fromBinary(ServerMessageSchema, b),
  },
} satisfies grpc.ServiceDefinition;

/** `unix:/path` stays as it is; `host:port` is used as given (grpc-js target syntax). */
export function grpcTarget(address: string): string {
  return address;
}
