// The part of ONNX's schema (onnx/onnx.proto, IR version 8) that an exported model
// uses, as a protobufjs descriptor: the field numbers below are onnx.proto's, so
// protobufjs writes the same bytes any ONNX tool reads. Only the fields the exporter
// sets are listed (a protobuf reader takes absent fields as their defaults). The
// library rather than a hand-written encoder: the schema stays a readable table, and
// the tests decode the file back with the same table.

import protobuf from 'protobufjs';

/** ONNX's TensorProto.DataType values for the element types used here. */
export const ONNX_FLOAT = 1;
export const ONNX_INT64 = 7;
export const ONNX_BOOL = 9;

/** AttributeProto.AttributeType values. */
export const ATTRIBUTE_FLOAT = 1;
export const ATTRIBUTE_INT = 2;
export const ATTRIBUTE_INTS = 7;

/** The IR version that goes with opset 17 (ONNX 1.12). */
export const IR_VERSION = 8;
export const OPSET_VERSION = 17;

const ROOT = protobuf.Root.fromJSON({
  nested: {
    onnx: {
      nested: {
        ModelProto: {
          fields: {
            ir_version: { id: 1, type: 'int64' },
            producer_name: { id: 2, type: 'string' },
            producer_version: { id: 3, type: 'string' },
            doc_string: { id: 6, type: 'string' },
            graph: { id: 7, type: 'GraphProto' },
            opset_import: { id: 8, rule: 'repeated', type: 'OperatorSetIdProto' },
          },
        },
        OperatorSetIdProto: {
          fields: {
            domain: { id: 1, type: 'string' },
            version: { id: 2, type: 'int64' },
          },
        },
        GraphProto: {
          fields: {
            node: { id: 1, rule: 'repeated', type: 'NodeProto' },
            name: { id: 2, type: 'string' },
            initializer: { id: 5, rule: 'repeated', type: 'TensorProto' },
            input: { id: 11, rule: 'repeated', type: 'ValueInfoProto' },
            output: { id: 12, rule: 'repeated', type: 'ValueInfoProto' },
          },
        },
        NodeProto: {
          fields: {
            input: { id: 1, rule: 'repeated', type: 'string' },
            output: { id: 2, rule: 'repeated', type: 'string' },
            name: { id: 3, type: 'string' },
            op_type: { id: 4, type: 'string' },
            attribute: { id: 5, rule: 'repeated', type: 'AttributeProto' },
          },
        },
        AttributeProto: {
          fields: {
            name: { id: 1, type: 'string' },
            f: { id: 2, type: 'float' },
            i: { id: 3, type: 'int64' },
            ints: { id: 8, rule: 'repeated', type: 'int64' },
            type: { id: 20, type: 'int32' },
          },
        },
        TensorProto: {
          fields: {
            dims: { id: 1, rule: 'repeated', type: 'int64' },
            data_type: { id: 2, type: 'int32' },
            name: { id: 8, type: 'string' },
            raw_data: { id: 9, type: 'bytes' },
          },
        },
        ValueInfoProto: {
          fields: {
            name: { id: 1, type: 'string' },
            type: { id: 2, type: 'TypeProto' },
          },
        },
        TypeProto: {
          fields: { tensor_type: { id: 1, type: 'TensorTypeProto' } },
        },
        // TypeProto.Tensor in onnx.proto (a nested message; the name here is only local).
        TensorTypeProto: {
          fields: {
            elem_type: { id: 1, type: 'int32' },
            shape: { id: 2, type: 'TensorShapeProto' },
          },
        },
        TensorShapeProto: {
          fields: { dim: { id: 1, rule: 'repeated', type: 'Dimension' } },
        },
        // TensorShapeProto.Dimension: a fixed size or a named (dynamic) axis.
        Dimension: {
          fields: {
            dim_value: { id: 1, type: 'int64' },
            dim_param: { id: 2, type: 'string' },
          },
        },
      },
    },
  },
});

export interface OnnxAttribute {
  name: string;
  type: number;
  f?: number;
  i?: number;
  ints?: number[];
}

export interface OnnxNode {
  input: string[];
  output: string[];
  name: string;
  op_type: string;
  attribute: OnnxAttribute[];
}

export interface OnnxTensor {
  name: string;
  dims: number[];
  data_type: number;
  raw_data: Uint8Array;
}

export interface OnnxValueInfo {
  name: string;
  type: { tensor_type: { elem_type: number; shape: { dim: Array<{ dim_value: number } | { dim_param: string }> } } };
}

export interface OnnxGraph {
  name: string;
  node: OnnxNode[];
  initializer: OnnxTensor[];
  input: OnnxValueInfo[];
  output: OnnxValueInfo[];
}

export interface OnnxModel {
  ir_version: number;
  producer_name: string;
  producer_version: string;
  doc_string: string;
  graph: OnnxGraph;
  opset_import: Array<{ domain: string; version: number }>;
}

const MODEL_TYPE = ROOT.lookupType('onnx.ModelProto');

/** The serialized ModelProto (what a .onnx file holds). */
export function encodeOnnxModel(model: OnnxModel): Uint8Array {
  // encode() takes the plain object as it is: no copy of the weights on the way.
  return MODEL_TYPE.encode(model).finish();
}

/** A .onnx file's ModelProto as a plain object (int64 fields as numbers), for checks. */
export function decodeOnnxModel(bytes: Uint8Array): OnnxModel {
  return MODEL_TYPE.toObject(MODEL_TYPE.decode(bytes), { longs: Number, defaults: false, arrays: true }) as OnnxModel;
}
