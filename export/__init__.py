"""Export of encoders to TensorFlow Lite models that train and embed on the device."""
