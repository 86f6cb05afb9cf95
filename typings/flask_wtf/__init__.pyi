# The part of Flask-WTF that ChatLink uses, typed (Flask-WTF ships no type information).
from flask_wtf.csrf import CSRFProtect as CSRFProtect
from flask_wtf.form import FlaskForm as FlaskForm
