#include "tensor_handle.h"

#include <cstring>
#include <sstream>

namespace roformer::js {

namespace {

// The dtype a JS TypedArray holds natively (Uint16Array has none: it carries raw
// float16/bfloat16 bits and needs the dtype said explicitly).
c10::optional<torch::ScalarType> typed_array_dtype(napi_typedarray_type type) {
  switch (type) {
    case napi_float32_array: return torch::kFloat;
    case napi_float64_array: return torch::kDouble;
    case napi_int32_array: return torch::kInt;
    case napi_bigint64_array: return torch::kLong;
    case napi_int16_array: return torch::kShort;
    case napi_int8_array: return torch::kChar;
    case napi_uint8_array: return torch::kByte;
    default: return c10::nullopt;
  }
}

std::vector<int64_t> parse_shape(const Napi::Env& env, const Napi::Value& value) {
  if (!value.IsArray()) throw_type_error(env, "shape must be an array of non-negative integers");
  auto array = value.As<Napi::Array>();
  std::vector<int64_t> shape;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value dim = array[i];
    const double d = dim.IsNumber() ? dim.As<Napi::Number>().DoubleValue() : -1.0;
    if (!(d >= 0) || d != static_cast<double>(static_cast<int64_t>(d))) {
      throw_type_error(env, "shape[" + std::to_string(i) + "] must be a non-negative integer, got " +
                                dim.ToString().Utf8Value());
    }
    shape.push_back(static_cast<int64_t>(d));
  }
  return shape;
}

int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << c10::IntArrayRef(shape);
  return out.str();
}

// Copies a contiguous CPU tensor into a new TypedArray of the matching kind.
template <typename T>
Napi::Value copy_out(Napi::Env env, const torch::Tensor& t, napi_typedarray_type kind) {
  auto array = Napi::TypedArrayOf<T>::New(env, static_cast<size_t>(t.numel()), kind);
  if (t.numel() > 0) std::memcpy(array.Data(), t.data_ptr(), t.numel() * sizeof(T));
  return array;
}

}  // namespace

Napi::Function TensorHandle::define_class(Napi::Env env) {
  return DefineClass(env, "Tensor",
                     {
                         InstanceAccessor<&TensorHandle::shape>("shape"),
                         InstanceAccessor<&TensorHandle::dtype>("dtype"),
                         InstanceAccessor<&TensorHandle::device>("device"),
                         InstanceAccessor<&TensorHandle::numel>("numel"),
                         InstanceAccessor<&TensorHandle::disposed>("disposed"),
                         InstanceMethod<&TensorHandle::to_array>("toArray"),
                         InstanceMethod<&TensorHandle::to_buffer>("toBuffer"),
                         InstanceMethod<&TensorHandle::to>("to"),
                         InstanceMethod<&TensorHandle::dispose>("dispose"),
                         InstanceMethod<&TensorHandle::to_string>("toString"),
                     });
}

TensorHandle::TensorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorHandle>(info), env_(info.Env()) {}

TensorHandle::~TensorHandle() { release(); }

Napi::Object TensorHandle::wrap(Napi::Env env, torch::Tensor tensor) {
  auto object = addon_data(env).tensor_constructor.New({});
  Unwrap(object)->set(std::move(tensor));
  return object;
}

torch::Tensor TensorHandle::unwrap(const Napi::Value& value, const std::string& what, bool optional) {
  auto env = value.Env();
  if (optional && (value.IsNull() || value.IsUndefined())) return {};
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(addon_data(env).tensor_constructor.Value())) {
    throw_type_error(env, what + " must be a Tensor, got " +
                              (value.IsObject() ? std::string("an object") : value.ToString().Utf8Value()));
  }
  auto* handle = Unwrap(value.As<Napi::Object>());
  if (!handle->tensor_.defined()) throw Napi::Error::New(env, what + " is a Tensor that was disposed");
  return handle->tensor_;
}

void TensorHandle::set(torch::Tensor tensor) {
  release();
  tensor_ = std::move(tensor);
  if (tensor_.device().is_cpu()) {
    external_bytes_ = static_cast<int64_t>(tensor_.numel() * tensor_.element_size());
    Napi::MemoryManagement::AdjustExternalMemory(env_, external_bytes_);
  }
}

void TensorHandle::release() {
  if (external_bytes_ != 0) Napi::MemoryManagement::AdjustExternalMemory(env_, -external_bytes_);
  external_bytes_ = 0;
  tensor_ = torch::Tensor();
}

const torch::Tensor& TensorHandle::live(const char* method) const {
  if (!tensor_.defined()) {
    throw Napi::Error::New(env_, std::string("Tensor.") + method + ": this Tensor was disposed and can no longer be used");
  }
  return tensor_;
}

Napi::Value TensorHandle::from_array(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 2 || !info[0].IsTypedArray()) {
      throw_type_error(env, "tensor(data, shape, dtype?): data must be a TypedArray (Float32Array, Int32Array, ...)");
    }
    auto array = info[0].As<Napi::TypedArray>();
    auto shape = parse_shape(env, info[1]);
    c10::optional<torch::ScalarType> target;
    if (info.Length() > 2 && !info[2].IsUndefined()) {
      if (!info[2].IsString()) throw_type_error(env, "dtype must be a string such as 'float32'");
      target = parse_dtype(info[2].As<Napi::String>().Utf8Value());
    }
    auto source = typed_array_dtype(array.TypedArrayType());
    if (array.TypedArrayType() == napi_uint16_array) {
      if (!target || (*target != torch::kHalf && *target != torch::kBFloat16)) {
        throw_type_error(env, "a Uint16Array holds raw float16/bfloat16 bits: pass dtype 'float16' or 'bfloat16'");
      }
      source = target;
    }
    if (!source) throw_type_error(env, "unsupported TypedArray kind for a Tensor");
    const int64_t n = element_count(shape);
    if (n != static_cast<int64_t>(array.ElementLength())) {
      throw Napi::RangeError::New(env, "data has " + std::to_string(array.ElementLength()) +
                                           " elements but shape " + shape_text(shape) + " needs " + std::to_string(n));
    }
    auto tensor = torch::empty(shape, torch::TensorOptions().dtype(*source));
    const auto* bytes = static_cast<const uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
    if (n > 0) std::memcpy(tensor.data_ptr(), bytes, n * tensor.element_size());
    return wrap(env, target ? tensor.to(*target) : tensor);
  });
}

Napi::Value TensorHandle::from_bytes(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 3 || !info[0].IsTypedArray() || !info[2].IsString()) {
      throw_type_error(env, "fromBytes(bytes: Uint8Array, shape: number[], dtype: string)");
    }
    auto array = info[0].As<Napi::TypedArray>();
    auto shape = parse_shape(env, info[1]);
    auto dtype = parse_dtype(info[2].As<Napi::String>().Utf8Value());
    // Check the byte count before allocating: a bad shape must not reserve memory.
    const size_t expected = static_cast<size_t>(element_count(shape)) * c10::elementSize(dtype);
    if (array.ByteLength() != expected) {
      throw Napi::RangeError::New(env, "fromBytes: " + std::to_string(array.ByteLength()) + " bytes given, but " +
                                           info[2].As<Napi::String>().Utf8Value() + " " + shape_text(shape) +
                                           " needs " + std::to_string(expected));
    }
    auto tensor = torch::empty(shape, torch::TensorOptions().dtype(dtype));
    const auto* bytes = static_cast<const uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
    if (expected > 0) std::memcpy(tensor.data_ptr(), bytes, expected);
    return wrap(env, tensor);
  });
}

Napi::Value TensorHandle::shape(const Napi::CallbackInfo& info) {
  const auto& t = live("shape");
  auto array = Napi::Array::New(info.Env(), t.dim());
  for (int64_t i = 0; i < t.dim(); ++i) array.Set(static_cast<uint32_t>(i), Napi::Number::New(info.Env(), t.size(i)));
  return array;
}

Napi::Value TensorHandle::dtype(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), dtype_name(live("dtype").scalar_type()));
}

Napi::Value TensorHandle::device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), live("device").device().str());
}

Napi::Value TensorHandle::numel(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(live("numel").numel()));
}

Napi::Value TensorHandle::disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !tensor_.defined());
}

Napi::Value TensorHandle::to_array(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto t = live("toArray").detach().to(torch::kCPU);
    // float16 and bfloat16 have no TypedArray in Node 20: read them back as float32.
    if (t.scalar_type() == torch::kHalf || t.scalar_type() == torch::kBFloat16) t = t.to(torch::kFloat);
    t = t.contiguous();
    switch (t.scalar_type()) {
      case torch::kFloat: return copy_out<float>(env, t, napi_float32_array);
      case torch::kDouble: return copy_out<double>(env, t, napi_float64_array);
      case torch::kInt: return copy_out<int32_t>(env, t, napi_int32_array);
      case torch::kLong: return copy_out<int64_t>(env, t, napi_bigint64_array);
      case torch::kShort: return copy_out<int16_t>(env, t, napi_int16_array);
      case torch::kChar: return copy_out<int8_t>(env, t, napi_int8_array);
      case torch::kByte: return copy_out<uint8_t>(env, t, napi_uint8_array);
      case torch::kBool: return copy_out<uint8_t>(env, t.to(torch::kByte), napi_uint8_array);
      default: throw std::invalid_argument("toArray: unsupported dtype " + dtype_name(t.scalar_type()));
    }
  });
}

Napi::Value TensorHandle::to_buffer(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto t = live("toBuffer").detach().to(torch::kCPU).contiguous();
    return Napi::Buffer<uint8_t>::Copy(env, static_cast<const uint8_t*>(t.data_ptr()), t.numel() * t.element_size());
  });
}

Napi::Value TensorHandle::to(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const auto& t = live("to");
    auto device = t.device();
    auto dtype = t.scalar_type();
    if (info.Length() > 0 && !info[0].IsUndefined() && !info[0].IsNull()) {
      if (!info[0].IsString()) throw_type_error(env, "Tensor.to(device?, dtype?): device must be a string");
      device = parse_device(info[0].As<Napi::String>().Utf8Value());
    }
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      if (!info[1].IsString()) throw_type_error(env, "Tensor.to(device?, dtype?): dtype must be a string");
      dtype = parse_dtype(info[1].As<Napi::String>().Utf8Value());
    }
    return wrap(env, t.to(device, dtype, /*non_blocking=*/false, /*copy=*/true));
  });
}

Napi::Value TensorHandle::dispose(const Napi::CallbackInfo& info) {
  release();
  return info.Env().Undefined();
}

Napi::Value TensorHandle::to_string(const Napi::CallbackInfo& info) {
  if (!tensor_.defined()) return Napi::String::New(info.Env(), "Tensor(disposed)");
  std::ostringstream out;
  out << "Tensor(shape=" << tensor_.sizes() << ", dtype=" << dtype_name(tensor_.scalar_type())
      << ", device=" << tensor_.device() << ")";
  return Napi::String::New(info.Env(), out.str());
}

}  // namespace roformer::js
